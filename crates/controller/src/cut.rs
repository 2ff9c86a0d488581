//! The cut of a snapshot of a replicated resource: one write boundary on every replica, taken
//! while the resource is in use.
//!
//! Each node takes its snapshot in its own convergence pass, so a write of the Primary could
//! land between two nodes' snapshots. The controller prevents that as LINSTOR does with DRBD, in
//! three changes pushed to every member of the resource (diskless ones included, since the
//! Primary may be one of them):
//!
//! ```text
//!   1. SUSPENDING  every member holds the resource's writes (engine `suspend-io`: the writes in
//!                  flight complete — with protocol C on every disk — and new ones wait) and
//!                  reports it; a member that cannot ──▶ ABANDONED (nothing is taken)
//!   2. TAKING      the diskful members take their snapshots while they hold the writes
//!   3. DONE        every member lets the writes go on
//! ```
//!
//! Each step waits for the members as any change does (up to the apply timeout). Each node
//! reports its hold with an id that changes whenever the hold ended and began again (the
//! satellite or its engine restarted, the lease ran out); the cut is kept only if every member
//! reports the same hold after the snapshots as before them, else it is `ABANDONED`: its
//! snapshots are never `SUCCESSFUL` and never restored from. A node ends a hold on its own after
//! `ferrite_proto::SUSPEND_IO_LEASE_MS` and never takes a snapshot under a hold that began after
//! the cut did, so a controller that dies mid-cut leaves applications waiting at most that long;
//! at its next start, a cut it finds under way is abandoned (the holds can no longer be
//! checked).

use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, NodeName, ResourceName, SnapshotName};

use crate::app::placement::Runtime;
use crate::app::{Context, Failure, Object, Operation, Plan};
use crate::core::Controller;
use crate::model::{Cluster, CutPhase, Op};

const CREATE: Context = Context::new(Operation::Create, Object::Snapshot);

/// A snapshot definition, by resource and name.
pub type SnapshotRef = (ResourceName, SnapshotName);

/// A member's hold of the resource's writes: node and hold id.
type Holds = Vec<(ResourceName, NodeName, u64)>;

/// A member that does not hold the resource's writes, and what its node says about it.
struct NotHeld {
    resource: ResourceName,
    node: NodeName,
    why: String,
}

impl Controller {
    /// Creates snapshots with `plan` and drives the cut of those of replicated resources among
    /// `names` (read after the plan is committed). Snapshots of several resources created
    /// together are cut together: all hold, then all are taken.
    pub async fn take_snapshots(
        &self,
        plan: impl FnOnce(&Cluster, &Runtime) -> Result<Plan, Failure>,
        names: impl FnOnce(&Cluster) -> Vec<SnapshotRef>,
    ) -> Result<Vec<ApiCallRc>, Failure> {
        let mut entries = self.mutate(plan).await?;
        let pending: Vec<SnapshotRef> = self.read(|cluster| {
            names(cluster)
                .into_iter()
                .filter(|(resource, snapshot)| {
                    cluster
                        .snapshot_definition(resource, snapshot)
                        .is_some_and(|d| d.cut == CutPhase::Suspending)
                })
                .collect()
        });
        if pending.is_empty() {
            return Ok(entries);
        }
        let (holds, not_held) = self.read_with_runtime(|cluster, runtime| {
            holds_of(cluster, runtime, pending.iter().map(|(r, _)| r))
        });
        let (abandoned, cut): (Vec<SnapshotRef>, Vec<SnapshotRef>) = pending
            .into_iter()
            .partition(|(resource, _)| not_held.iter().any(|n| &n.resource == resource));
        entries.extend(self.abandon(&abandoned, &not_held).await);
        if cut.is_empty() {
            return Ok(entries);
        }
        entries.extend(self.set_cut(&cut, CutPhase::Taking).await);
        // Every member must still hold under the hold it had before the snapshots.
        let (after, _) = self.read_with_runtime(|cluster, runtime| {
            holds_of(cluster, runtime, cut.iter().map(|(r, _)| r))
        });
        let broken: Vec<NotHeld> = holds
            .iter()
            .filter(|(resource, _, _)| cut.iter().any(|(r, _)| r == resource))
            .filter(|held| !after.contains(held))
            .map(|(resource, node, _)| NotHeld {
                resource: resource.clone(),
                node: node.clone(),
                why: "its hold of the writes ended during the cut (its satellite or engine \
                      restarted, or the lease ran out), so writes may have crossed it"
                    .to_string(),
            })
            .collect();
        let (abandoned, kept): (Vec<SnapshotRef>, Vec<SnapshotRef>) = cut
            .into_iter()
            .partition(|(resource, _)| broken.iter().any(|n| &n.resource == resource));
        entries.extend(self.abandon(&abandoned, &broken).await);
        entries.extend(self.set_cut(&kept, CutPhase::Done).await);
        Ok(entries)
    }

    /// Abandons the cuts of `names`, the members of `not_held` being why; returns the errors.
    async fn abandon(&self, names: &[SnapshotRef], not_held: &[NotHeld]) -> Vec<ApiCallRc> {
        let mut entries = Vec::new();
        if !names.is_empty() {
            tracing::warn!(snapshots = ?names, "snapshot cut abandoned: a member did not hold its writes throughout");
            entries.extend(self.set_cut(names, CutPhase::Abandoned).await);
            entries.extend(not_held.iter().map(|n| {
                CREATE.error(
                    code::FAIL_NOT_CONNECTED,
                    format!(
                        "Snapshot of '{}' failed: node '{}' did not hold the resource's writes throughout the cut.",
                        n.resource, n.node
                    ),
                )
                .cause(n.why.clone())
                .correction(
                    "Fix the cause on that node, delete the failed snapshot and take it again.",
                )
                .obj_ref("RscDfn", n.resource.as_str())
                .obj_ref("Node", n.node.as_str())
            }));
        }
        entries
    }

    /// Abandons the cuts a previous controller left under way: whether every member held its
    /// writes throughout can no longer be known.
    pub async fn finish_interrupted_cuts(&self) -> Vec<ApiCallRc> {
        let interrupted: Vec<SnapshotRef> = self.read(|cluster| {
            cluster
                .snapshot_definitions
                .values()
                .filter(|d| d.cut.holds_writes())
                .map(|d| (d.resource.clone(), d.name.clone()))
                .collect()
        });
        if interrupted.is_empty() {
            return Vec::new();
        }
        tracing::warn!(snapshots = ?interrupted, "abandoning the snapshot cuts the previous controller left under way");
        self.set_cut(&interrupted, CutPhase::Abandoned).await
    }

    /// Moves the cuts of `names` to `phase` and waits for the members; returns the warnings.
    async fn set_cut(&self, names: &[SnapshotRef], phase: CutPhase) -> Vec<ApiCallRc> {
        match self
            .mutate(|cluster, _| Ok(cut_plan(cluster, names, phase)))
            .await
        {
            Ok(entries) => entries
                .into_iter()
                .filter(|e| e.ret_code().is_warning() || e.ret_code().is_error())
                .collect(),
            Err(failure) => failure.0,
        }
    }
}

/// The change that moves the cuts of `names` to `phase`.
fn cut_plan(cluster: &Cluster, names: &[SnapshotRef], phase: CutPhase) -> Plan {
    let mut plan = Plan::new();
    for (resource, snapshot) in names {
        if let Some(definition) = cluster.snapshot_definition(resource, snapshot)
            && definition.cut != phase
        {
            let mut definition = definition.clone();
            definition.cut = phase;
            definition.snapshots = Default::default();
            plan.op(Op::PutSnapshotDefinition(definition));
        }
    }
    plan
}

/// The holds the members of `resources` report, and the members that report none.
fn holds_of<'a>(
    cluster: &Cluster,
    runtime: &Runtime,
    resources: impl Iterator<Item = &'a ResourceName>,
) -> (Holds, Vec<NotHeld>) {
    let mut holds = Vec::new();
    let mut missing = Vec::new();
    for name in resources {
        let Some(rd) = cluster.resource_definition(name) else {
            continue;
        };
        for member in rd
            .resources
            .values()
            .filter(|r| !r.is_deleting() && !r.inactive)
        {
            let report = runtime.get(&member.node);
            if let Some(hold) = report.and_then(|n| n.hold_of(name.as_str())) {
                holds.push((name.clone(), member.node.clone(), hold));
                continue;
            }
            let why = match report {
                None => "its satellite has not reported".to_string(),
                Some(n) if !n.is_online() => format!(
                    "its satellite is offline{}",
                    n.last_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
                Some(n) => {
                    let needle = format!("resource '{}'", name.as_str().to_ascii_lowercase());
                    n.errors
                        .iter()
                        .find(|e| e.to_ascii_lowercase().contains(&needle))
                        .cloned()
                        .unwrap_or_else(|| {
                            "its satellite did not confirm the hold within the apply timeout"
                                .to_string()
                        })
                }
            };
            missing.push(NotHeld {
                resource: name.clone(),
                node: member.node.clone(),
                why,
            });
        }
    }
    (holds, missing)
}
