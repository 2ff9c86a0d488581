//! The controller's core: the object graph, its store, the satellite links, and the one path
//! every change takes.
//!
//! A change is planned against the current graph, committed to the store, applied in memory,
//! and only once the commit is on disk pushed to the satellites it concerns and answered
//! (write before you act). Planning, committing and applying happen under one mutation lock,
//! so plans never race each other; the sync that makes the commit durable, shared by the
//! changes committed while it waits (`crate::durable`), and the wait for satellites happen
//! outside it, so neither the disk nor slow nodes hold up the cluster. Readers take a read lock
//! on the graph and never wait for the store; they may see a change whose sync is under way.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ferrite_store::{DataDirLock, Store, StoreError};
use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, NodeName, ResourceName, RetCode};
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::app::placement::Runtime;
use crate::app::{Failure, Plan};
use crate::durable::{Durability, Publication};
use crate::metrics::Metrics;
use crate::model::{self, Cluster, Op, StoredErrorReport};
use crate::satellites::{NotApplied, Satellites, Timeouts, desired};

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load the cluster from the store: {0}")]
    Load(#[from] model::LoadError),
    #[error("cannot load the cluster from the store: {0}")]
    Read(#[from] model::ReadError),
    #[error("cannot run the store task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot create the default objects: {0}")]
    Defaults(String),
}

/// A change that takes this long, from asking for the mutation lock to every satellite's
/// answer, is logged with where its time went (waiting for the lock, planning, the store's
/// commit, applying, the sync that made it durable, the satellites).
const SLOW_CHANGE: std::time::Duration = std::time::Duration::from_millis(50);

struct Inner {
    store: Mutex<Store>,
    durability: Arc<Durability>,
    cluster: Arc<RwLock<Cluster>>,
    mutations: tokio::sync::Mutex<()>,
    satellites: Satellites,
    metrics: Metrics,
    /// Prefix of this run's error report ids.
    instance: String,
    error_reports: AtomicU64,
}

/// A handle on the running controller; cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Opens the store in the locked data directory, loads the cluster and starts a link to
    /// every satellite.
    pub async fn start(lock: DataDirLock, timeouts: Timeouts) -> Result<Controller, StartError> {
        let started = std::time::Instant::now();
        let (store, wal, cluster) =
            tokio::task::spawn_blocking(move || -> Result<_, StartError> {
                let (mut store, check) =
                    Store::open_checking_pages_aside(lock, &uuid::Uuid::new_v4().to_string())?;
                let cluster = Cluster::load(&store, check)?;
                let wal = store.defer_syncs()?;
                Ok((store, wal, cluster))
            })
            .await??;
        let durability = Arc::new(Durability::new(wal, cluster.revision));
        let nodes: Vec<NodeName> = cluster
            .nodes
            .values()
            .filter(|n| n.node_type.has_satellite())
            .map(|n| n.name.clone())
            .collect();
        info!(
            nodes = cluster.nodes.len(),
            resource_definitions = cluster.resource_definitions.len(),
            revision = cluster.revision,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "cluster loaded"
        );
        let cluster = Arc::new(RwLock::new(cluster));
        let satellites = Satellites::new(
            cluster.clone(),
            durability.watch(),
            timeouts,
            crate::VERSION.to_string(),
        );
        let controller = Controller {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                durability,
                cluster,
                mutations: tokio::sync::Mutex::new(()),
                satellites,
                metrics: Metrics::default(),
                instance: format!("{:08X}", chrono::Utc::now().timestamp() as u32),
                error_reports: AtomicU64::new(0),
            }),
        };
        controller.ensure_defaults().await.map_err(|f| {
            StartError::Defaults(
                f.0.iter()
                    .map(|r| r.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        // Replicated objects of an older store get what they lack before any satellite hears
        // of them.
        controller
            .mutate(|cluster, _| crate::app::allocation::backfill(cluster))
            .await
            .map_err(|f| {
                StartError::Defaults(
                    f.0.iter()
                        .map(|r| r.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        for node in &nodes {
            controller.inner.satellites.start(node);
        }
        controller.finish_deletions_when_confirmed();
        controller.keep_used_tiebreakers_when_reported();
        // A snapshot cut the previous controller left under way holds applications' writes
        // until the nodes' lease ends it: abandon it now (`crate::cut`).
        if controller.read(|c| {
            c.snapshot_definitions
                .values()
                .any(|d| d.cut.holds_writes())
        }) {
            let controller = controller.clone();
            tokio::spawn(async move {
                for warning in controller.finish_interrupted_cuts().await {
                    tracing::warn!(message = %warning.message, "ending interrupted snapshot cuts");
                }
            });
        }
        Ok(controller)
    }

    /// Runs [`Controller::finish_deletions`] whenever a satellite confirms a deletion, for as
    /// long as the controller lives. So a node that comes back finishes what was marked while
    /// it was away, without a request.
    fn finish_deletions_when_confirmed(&self) {
        let confirmed = self.inner.satellites.deletions_confirmed();
        let controller = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                confirmed.notified().await;
                let Some(inner) = controller.upgrade() else {
                    return;
                };
                let warnings = Controller { inner }.finish_deletions().await;
                for warning in warnings {
                    tracing::warn!(message = %warning.message, "finishing confirmed deletions");
                }
            }
        });
    }

    /// Keeps every tiebreaker its node reports in use as a diskless resource
    /// (`crate::app::tiebreaker::keep_used`), whenever a satellite reports a replicated resource
    /// in use, for as long as the controller lives.
    fn keep_used_tiebreakers_when_reported(&self) {
        let reported = self.inner.satellites.in_use_reported();
        let controller = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                reported.notified().await;
                let Some(inner) = controller.upgrade() else {
                    return;
                };
                let kept = Controller { inner }
                    .commit_plan(|cluster, runtime| {
                        Ok(crate::app::tiebreaker::keep_used(cluster, runtime))
                    })
                    .await;
                match kept {
                    Ok((replies, _, _)) => {
                        for reply in replies {
                            tracing::info!(message = %reply.message, "keeping a tiebreaker in use");
                        }
                    }
                    Err(failure) => {
                        for reply in failure.0 {
                            tracing::warn!(message = %reply.message, "keeping a tiebreaker in use");
                        }
                    }
                }
            }
        });
    }

    /// Creates LINSTOR's default resource group on a new store.
    async fn ensure_defaults(&self) -> Result<(), Failure> {
        let name: ferrite_types::ResourceGroupName = ferrite_types::DEFAULT_RESOURCE_GROUP
            .parse()
            .expect("constant is valid");
        if self.read(|c| c.resource_groups.contains_key(&name)) {
            return Ok(());
        }
        self.mutate(|_, _| {
            let mut plan = Plan::new();
            plan.op(Op::PutResourceGroup(model::ResourceGroup {
                name: name.clone(),
                uuid: model::new_uuid(),
                description: None,
                props: Default::default(),
                select_filter: Default::default(),
                peer_slots: None,
                volume_groups: Default::default(),
            }));
            Ok(plan)
        })
        .await
        .map(|_| ())
    }

    /// Reads the graph.
    pub fn read<T>(&self, f: impl FnOnce(&Cluster) -> T) -> T {
        f(&self.inner.cluster.read().expect("cluster lock"))
    }

    /// Reads the graph together with what satellites reported.
    pub fn read_with_runtime<T>(&self, f: impl FnOnce(&Cluster, &Runtime) -> T) -> T {
        let cluster = self.inner.cluster.read().expect("cluster lock");
        self.inner
            .satellites
            .with_runtime(|runtime| f(&cluster, runtime))
    }

    pub fn satellites(&self) -> &Satellites {
        &self.inner.satellites
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Writes a consistent copy of the store to `target` (see `ferrite_store::backup`).
    pub async fn backup(
        &self,
        target: std::path::PathBuf,
    ) -> Result<ferrite_store::backup::BackupInfo, ferrite_store::backup::BackupError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.store.lock().expect("store lock").backup(&target))
            .await
            .expect("the backup task does not panic")
    }

    /// Whether the store answers.
    pub fn store_healthy(&self) -> bool {
        self.inner
            .store
            .lock()
            .map(|s| s.revision() > 0)
            .unwrap_or(false)
    }

    /// Plans a change, commits it, applies it, pushes it to the satellites concerned and waits
    /// for them (up to the apply timeout). The answer carries the plan's replies plus a warning
    /// for every satellite that did not confirm and every volume that failed. A plan that marks
    /// something for deletion is followed by an attempt to finish the deletions the satellites
    /// confirmed; the answer says for each whether it is done or what it waits for.
    pub async fn mutate(
        &self,
        plan: impl FnOnce(&Cluster, &Runtime) -> Result<Plan, Failure>,
    ) -> Result<Vec<ApiCallRc>, Failure> {
        let (mut replies, marked, forgot) = self.commit_plan(plan).await?;
        if !marked.is_empty() || forgot {
            replies.extend(self.finish_deletions().await);
            replies.extend(self.read_with_runtime(|cluster, runtime| {
                marked
                    .iter()
                    .map(|m| m.outcome(cluster, runtime))
                    .collect::<Vec<_>>()
            }));
        }
        Ok(replies)
    }

    /// Finishes every deletion the satellites have confirmed (see `app::deletions`). Returns
    /// warnings of the commit, if any.
    pub async fn finish_deletions(&self) -> Vec<ApiCallRc> {
        match self
            .commit_plan(|cluster, runtime| Ok(crate::app::deletions::finish(cluster, runtime)))
            .await
        {
            Ok((replies, _, _)) => replies
                .into_iter()
                .filter(|r| r.ret_code().is_warning() || r.ret_code().is_error())
                .collect(),
            Err(failure) => failure.0,
        }
    }

    /// Plans, commits, applies and pushes one change, and waits for the satellites. Returns the
    /// replies, what the plan marked for deletion, and whether it forgot a resource outright.
    async fn commit_plan(
        &self,
        plan: impl FnOnce(&Cluster, &Runtime) -> Result<Plan, Failure>,
    ) -> Result<(Vec<ApiCallRc>, Vec<crate::app::deletions::Marked>, bool), Failure> {
        let asked = std::time::Instant::now();
        let guard = self.inner.mutations.lock().await;
        let locked = asked.elapsed();
        let mut plan = self.read_with_runtime(plan)?;
        self.read_with_runtime(|cluster, runtime| {
            crate::app::finalize(cluster, runtime, &mut plan)
        })?;
        if plan.ops.is_empty() {
            return Ok((plan.replies, plan.deletions, false));
        }
        let Plan {
            ops,
            mut replies,
            wait_online,
            deletions,
            no_wait,
        } = plan;
        let forgot = ops.iter().any(|op| matches!(op, Op::DeleteResource { .. }));

        let mut touched: BTreeSet<(NodeName, Option<ResourceName>)> = BTreeSet::new();
        let (nodes_before, addresses_before) = self.read(|cluster| {
            for op in &ops {
                op.touches(cluster, &mut touched);
            }
            let nodes: BTreeSet<NodeName> = cluster.nodes.keys().cloned().collect();
            let addresses: Vec<(NodeName, Option<std::net::SocketAddr>)> = cluster
                .nodes
                .values()
                .map(|n| (n.name.clone(), n.satellite_address()))
                .collect();
            (nodes, addresses)
        });

        let changes: Vec<_> =
            self.read(|cluster| ops.iter().flat_map(|op| op.to_changes(cluster)).collect());
        let planned = asked.elapsed();
        let store = self.inner.clone();
        let committed = tokio::task::spawn_blocking(move || {
            store.store.lock().expect("store lock").commit(&changes)
        })
        .await;
        let revision = match committed {
            Ok(Ok(revision)) => revision,
            Ok(Err(e)) => {
                return Err(self
                    .internal_error("store", "The change could not be saved.", e.to_string())
                    .await);
            }
            Err(e) => {
                return Err(self
                    .internal_error("store", "The change could not be saved.", e.to_string())
                    .await);
            }
        };
        self.inner.metrics.record_commit();
        let stored = asked.elapsed();

        // Apply, and build what the change does once durable, under the write lock: the
        // deltas are this revision's, whatever changes come after it.
        let mut waits: Vec<NodeName> = Vec::new();
        let mut publication = Publication {
            revision,
            ..Publication::default()
        };
        {
            let mut cluster = self.inner.cluster.write().expect("cluster lock");
            for op in ops {
                op.apply(&mut cluster);
            }
            cluster.revision = revision;
            for node in cluster.nodes.keys().filter(|n| !nodes_before.contains(*n)) {
                if cluster
                    .node(node)
                    .is_some_and(|n| n.node_type.has_satellite())
                {
                    publication.start.push(node.clone());
                }
            }
            for gone in nodes_before
                .iter()
                .filter(|n| !cluster.nodes.contains_key(*n))
            {
                publication.stop.push(gone.clone());
            }
            for (node, before) in &addresses_before {
                if let Some(now) = cluster.node(node)
                    && now.satellite_address() != *before
                {
                    publication.reconnect.push(node.clone());
                }
            }
            let mut by_node: std::collections::BTreeMap<&NodeName, Vec<&ResourceName>> =
                Default::default();
            for (node, resource) in &touched {
                if cluster.nodes.contains_key(node) {
                    let entry = by_node.entry(node).or_default();
                    if let Some(resource) = resource {
                        entry.push(resource);
                    }
                }
            }
            for (node, resources) in by_node {
                if cluster
                    .node(node)
                    .is_some_and(|n| n.node_type.has_satellite())
                {
                    publication.push.push((
                        node.clone(),
                        desired::delta_state(&cluster, node, resources.iter().copied()),
                    ));
                    waits.push(node.clone());
                }
            }
        }
        self.inner.durability.enqueue(publication);
        drop(guard);
        let applied_in_memory = asked.elapsed();
        self.inner
            .durability
            .publish(revision, &self.inner.satellites)
            .await;
        let pushed = asked.elapsed();

        let waits: Vec<NodeName> = waits
            .into_iter()
            .filter(|n| !no_wait && !wait_online.contains(n))
            .collect();
        replies.extend(self.wait_for_nodes(&waits, &wait_online, revision).await);
        let applied = asked.elapsed();
        if applied >= SLOW_CHANGE {
            info!(
                revision,
                total_ms = applied.as_millis() as u64,
                lock_ms = locked.as_millis() as u64,
                plan_ms = (planned - locked).as_millis() as u64,
                store_ms = (stored - planned).as_millis() as u64,
                apply_ms = (applied_in_memory - stored).as_millis() as u64,
                sync_ms = (pushed - applied_in_memory).as_millis() as u64,
                satellites_ms = (applied - pushed).as_millis() as u64,
                "slow change"
            );
        }
        replies.extend(self.volume_problems(&touched));
        Ok((replies, deletions, forgot))
    }

    async fn wait_for_nodes(
        &self,
        nodes: &[NodeName],
        new_nodes: &[NodeName],
        revision: u64,
    ) -> Vec<ApiCallRc> {
        let mut tasks = JoinSet::new();
        for node in nodes {
            let satellites = self.inner.satellites.clone();
            let node = node.clone();
            tasks.spawn(async move {
                let result = satellites.wait_applied(&node, revision).await;
                (node, result.err())
            });
        }
        for node in new_nodes {
            let satellites = self.inner.satellites.clone();
            let node = node.clone();
            tasks.spawn(async move {
                let wait = satellites.timeouts().node_online;
                let result = satellites.wait_online(&node, wait).await;
                (
                    node.clone(),
                    result.err().map(|reason| NotApplied::Offline {
                        node: node.to_string(),
                        reason,
                    }),
                )
            });
        }
        let mut warnings = Vec::new();
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        for (node, problem) in outcomes {
            let Some(problem) = problem else { continue };
            let (code_value, message, correction) = match &problem {
                NotApplied::Offline { .. } if new_nodes.contains(&node) => (
                    code::WARN_NOT_CONNECTED,
                    format!("Node '{node}' is registered, but its satellite is not reachable yet."),
                    format!(
                        "Check that ferrite-satellite runs on '{node}' and listens on the address given; the controller keeps trying to connect."
                    ),
                ),
                NotApplied::Offline { .. } => (
                    code::WARN_NOT_CONNECTED,
                    format!(
                        "No active connection to satellite '{node}'; the change is recorded and will be applied when it reconnects."
                    ),
                    format!(
                        "Check that ferrite-satellite runs on '{node}' ('ferrite node list' shows why it is offline)."
                    ),
                ),
                NotApplied::Refused { .. } => (
                    code::WARN_STLT_NOT_UPDATED,
                    format!(
                        "Satellite '{node}' could not take the change; it is recorded and the controller keeps sending it."
                    ),
                    format!(
                        "Fix the cause on '{node}'; the satellite applies the change once it can."
                    ),
                ),
                NotApplied::Timeout { .. } => (
                    code::WARN_STLT_NOT_UPDATED,
                    format!(
                        "Satellite '{node}' has not confirmed the change yet; it is recorded and will be applied."
                    ),
                    "Watch 'ferrite resource list' for the result.".to_string(),
                ),
            };
            warnings.push(
                ApiCallRc::new(RetCode::warn(code_value), message)
                    .cause(problem.to_string())
                    .correction(correction)
                    .obj_ref("Node", node.as_str()),
            );
        }
        warnings
    }

    /// Warnings for volumes of the touched resources that satellites reported as failed, and
    /// for the problems touched nodes reported outside any volume (e.g. failed deletions).
    fn volume_problems(
        &self,
        touched: &BTreeSet<(NodeName, Option<ResourceName>)>,
    ) -> Vec<ApiCallRc> {
        self.inner.satellites.with_runtime(|runtime| {
            let mut warnings = Vec::new();
            let nodes: BTreeSet<&NodeName> = touched.iter().map(|(node, _)| node).collect();
            for node in nodes {
                let Some(report) = runtime.get(node) else { continue };
                for error in &report.errors {
                    warnings.push(
                        ApiCallRc::new(
                            RetCode::warn(code::WARN_STORAGE_ERROR),
                            format!("Satellite '{node}' reports a problem."),
                        )
                        .cause(error.clone())
                        .correction("Fix the cause on the node; the satellite retries on its own.")
                        .obj_ref("Node", node.as_str()),
                    );
                }
            }
            for (node, resource) in touched {
                let (Some(resource), Some(report)) = (resource, runtime.get(node)) else { continue };
                let volumes = report.volumes.get(resource.key()).into_iter().flatten();
                for (number, volume) in volumes.filter(|(_, v)| v.error.is_some()) {
                    warnings.push(
                        ApiCallRc::new(
                            RetCode::warn(code::WARN_STORAGE_ERROR),
                            format!("Volume {number} of resource '{resource}' failed on node '{node}'."),
                        )
                        .cause(volume.error.clone().unwrap_or_default())
                        .correction("Fix the cause on the node; the satellite retries on its own. Or delete the resource.")
                        .obj_ref("RscDfn", resource.as_str())
                        .obj_ref("Node", node.as_str()),
                    );
                }
            }
            warnings
        })
    }

    /// Records an unexpected failure as an error report and returns the entry that refers to it.
    pub async fn internal_error(&self, module: &str, message: &str, cause: String) -> Failure {
        let sequence = self.inner.error_reports.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("{}-00000-{sequence:06}", self.inner.instance);
        error!(report = %id, %module, %cause, "{message}");
        let report = StoredErrorReport {
            id: id.clone(),
            time: model::now_millis(),
            module: module.to_string(),
            message: message.to_string(),
            text: format!(
                "{message}\nCause: {cause}\nController version: {}\n",
                crate::VERSION
            ),
        };
        // Best effort: the store may be what failed, so the report is kept in memory regardless.
        let store = self.inner.clone();
        let op = Op::PutErrorReport(report.clone());
        let changes = self.read(|cluster| op.to_changes(cluster));
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut store) = store.store.lock() {
                let _ = store.commit(&changes);
            }
        })
        .await;
        op.apply(&mut self.inner.cluster.write().expect("cluster lock"));
        Failure::from(
            ApiCallRc::new(RetCode::error(code::FAIL_UNKNOWN_ERROR), message)
                .cause(cause)
                .correction(format!("See 'ferrite error-reports show {id}'."))
                .error_report(id),
        )
    }
}
