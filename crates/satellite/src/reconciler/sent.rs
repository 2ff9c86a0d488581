//! The last report sent to the controller ([`Sent`]), kept by parts: the node-wide part and
//! each resource's part, as the passes' outcomes hold them. An unprompted report is sent only
//! when the node's report differs noticeably from it, and the engines' state is compared with
//! it; both need it whole, and [`Sent::report`] assembles it then.
//!
//! After every answer the last report is what the passes found; after a named pass that is
//! the old one with the named resources' parts (and the node-wide part) replaced. So the
//! reconciler notes which resources' outcomes changed since the parts were taken
//! ([`Unsent`]) and copies only those: a delta costs what it names. An answer to deltas
//! records only the parts it carried: a resource a slice of the pass found changed before the
//! deltas came stays noted, for the report at the end of the pass. After a full pass at once
//! every part may have changed, and the next answer copies them all; a pass in slices notes the
//! resources whose outcome it changed, and is compared with the last report by those
//! ([`Reconciler::found_differs`]).
//!
//! A new controller session starts with nothing sent, but the last session's record is kept
//! aside: with the notes it still differs from what the passes found only where they say, so
//! the first answer of the session (a whole report, when a restarted controller reconnects
//! every node at once) records those parts instead of copying all 12,500 of a large node.

use std::collections::{BTreeMap, BTreeSet};

use ferrite_proto::{NodeReport, ReplicationReport, SatelliteMessage};
use tracing::debug;

use super::Reconciler;

/// The node's report from its node-wide part and every resource's (in [`super::resource_key`]
/// order): every resource's volumes, replication and deletions (`only` `None`), or those of
/// the resources `only` names. The node-wide lists (pools, errors, orphans, snapshots, held
/// writes) are always whole: the controller replaces them with every report.
pub(super) fn assemble<'a>(
    node: &NodeReport,
    parts: impl Iterator<Item = (&'a String, &'a NodeReport)>,
    only: Option<&BTreeSet<String>>,
) -> NodeReport {
    let mut report = report_of_node(node);
    for (key, part) in parts {
        if only.is_none_or(|names| names.contains(key)) {
            add_resource_part(&mut report, part);
        }
        add_node_wide_part(&mut report, part);
    }
    report.errors.extend(node.errors.iter().cloned());
    report
}

/// A report that starts from `node`'s pools, orphans and held writes; its errors go last.
pub(super) fn report_of_node(node: &NodeReport) -> NodeReport {
    NodeReport {
        generation: node.generation,
        storage_pools: node.storage_pools.clone(),
        orphans: node.orphans.clone(),
        io_suspended: node.io_suspended.clone(),
        ..NodeReport::default()
    }
}

/// Adds what a resource's part says of its own volumes: volumes, replication, deletions.
pub(super) fn add_resource_part(report: &mut NodeReport, part: &NodeReport) {
    report.volumes.extend(part.volumes.iter().cloned());
    report.replication.extend(part.replication.iter().cloned());
    report
        .deleted_volumes
        .extend(part.deleted_volumes.iter().cloned());
    report
        .deleted_resources
        .extend(part.deleted_resources.iter().cloned());
}

/// Adds what a resource's part puts in the node-wide lists: errors and snapshots.
pub(super) fn add_node_wide_part(report: &mut NodeReport, part: &NodeReport) {
    report.errors.extend(part.errors.iter().cloned());
    report.snapshots.extend(part.snapshots.iter().cloned());
    report
        .deleted_snapshots
        .extend(part.deleted_snapshots.iter().cloned());
}

/// The node-wide part of `node` that [`assemble`] reads.
fn node_part(node: &NodeReport) -> NodeReport {
    NodeReport {
        errors: node.errors.clone(),
        ..report_of_node(node)
    }
}

/// The last report sent, by parts.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    /// The node-wide part (generation, pools, orphans, held writes, node-wide errors).
    node: NodeReport,
    /// Each resource's part, by [`super::resource_key`].
    parts: BTreeMap<String, NodeReport>,
}

impl Sent {
    /// The report, whole.
    pub(super) fn report(&self) -> NodeReport {
        assemble(&self.node, self.parts.iter(), None)
    }
}

/// The resources whose outcome may differ from their part of the last report sent.
#[derive(Debug)]
pub(super) enum Unsent {
    Some(BTreeSet<String>),
    /// Any of them (after a full pass).
    All,
}

impl Default for Unsent {
    fn default() -> Self {
        Unsent::Some(BTreeSet::new())
    }
}

impl Unsent {
    /// Notes that the outcome of the resource of key `key` may have changed.
    pub(super) fn note(&mut self, key: &str) {
        if let Unsent::Some(keys) = self
            && !keys.contains(key)
        {
            keys.insert(key.to_string());
        }
    }
}

impl Reconciler {
    /// Records that the last report sent is what the passes found, every part of it.
    pub(super) fn sent_whole(&mut self) {
        self.earlier_sent = None;
        self.last_sent = Some(Sent {
            node: node_part(&self.node_outcome),
            parts: self
                .outcomes
                .iter()
                .map(|(key, outcome)| (key.clone(), outcome.report.clone()))
                .collect(),
        });
        self.unsent = Unsent::default();
    }

    /// Whether what the passes found differs noticeably ([`super::differs_noticeably`]) from
    /// the last report sent (true if none was). Only the node-wide part and the parts
    /// [`Unsent`] names are compared, every other part being the one sent; so a pass in
    /// slices, which notes only the resources whose outcome changed, costs here what changed.
    pub(super) fn found_differs(&self) -> bool {
        let Some(sent) = &self.last_sent else {
            return true;
        };
        let Unsent::Some(keys) = &self.unsent else {
            return super::differs_noticeably(&sent.report(), &self.assemble(None));
        };
        super::differs_noticeably(&sent.node, &node_part(&self.node_outcome))
            || keys
                .iter()
                .any(|key| match (sent.parts.get(key), self.outcomes.get(key)) {
                    (Some(sent), Some(found)) => super::differs_noticeably(sent, &found.report),
                    (None, None) => false,
                    _ => true,
                })
    }

    /// Before the first record of a session: the earlier session's record, which differs from
    /// what the passes found only in the parts `unsent` names (as the record of this session
    /// would), is taken up again, so that recording the first answer (a whole report, to a
    /// controller that reconnected) copies those parts, not all of them.
    fn resume_earlier_record(&mut self) {
        if self.last_sent.is_none() && matches!(self.unsent, Unsent::Some(_)) {
            self.last_sent = self.earlier_sent.take();
        }
    }

    /// Records that the last report sent is what the passes found, copying only the parts
    /// that changed since the last record (all of them after a full pass at once).
    pub(super) fn sent_named(&mut self) {
        self.resume_earlier_record();
        let (Some(sent), Unsent::Some(keys)) = (&mut self.last_sent, &mut self.unsent) else {
            return self.sent_whole();
        };
        for key in std::mem::take(keys) {
            match self.outcomes.get(&key) {
                Some(outcome) => {
                    sent.parts.insert(key, outcome.report.clone());
                }
                None => {
                    sent.parts.remove(&key);
                }
            }
        }
        sent.node = node_part(&self.node_outcome);
    }

    /// Records that an answer to deltas sent the parts of the resources `keys` names (by
    /// resource key) and the node-wide part. The other resources noted since the last record
    /// stay noted: a slice of a pass that found one changed (a volume gone, say) before the
    /// deltas came did not send it, and the report at the end of the pass must.
    pub(super) fn sent_keys(&mut self, keys: &BTreeSet<String>) {
        self.resume_earlier_record();
        let (Some(sent), Unsent::Some(unsent)) = (&mut self.last_sent, &mut self.unsent) else {
            return self.sent_whole();
        };
        for key in keys {
            if !unsent.remove(key) {
                continue;
            }
            match self.outcomes.get(key) {
                Some(outcome) => {
                    sent.parts.insert(key.clone(), outcome.report.clone());
                }
                None => {
                    sent.parts.remove(key);
                }
            }
        }
        sent.node = node_part(&self.node_outcome);
    }

    /// Reads the engines' state again and sends it when it changed, without a storage pass:
    /// what an engine's event (a peer connected, a resync finished) calls for.
    pub(super) fn report_replication(&mut self) {
        let Some(last) = &self.last_sent else {
            return self.converge_and_report();
        };
        for driver in &mut self.drivers {
            driver.begin_pass();
        }
        let drivers = &self.drivers;
        let fresh = |old: &ReplicationReport| {
            match drivers.iter().find(|d| d.engine() == old.engine) {
                // An error from the last apply stays until the next pass applies again.
                Some(driver) => {
                    let fresh = driver.report(&old.resource, None);
                    if fresh.error.is_none() && old.error.is_some() {
                        ReplicationReport {
                            error: old.error.clone(),
                            ..fresh
                        }
                    } else {
                        fresh
                    }
                }
                None => old.clone(),
            }
        };
        // The parts whose replication changed, with it as it is now.
        let mut changed: Vec<(String, Vec<ReplicationReport>)> = Vec::new();
        for (key, part) in &last.parts {
            let replication: Vec<ReplicationReport> = part.replication.iter().map(fresh).collect();
            if replication != part.replication {
                changed.push((key.clone(), replication));
            }
        }
        if changed.is_empty() {
            return;
        }
        let Some(sent) = self.last_sent.as_mut() else {
            return;
        };
        // What they were, to go back to if the report cannot be sent.
        let mut before = Vec::with_capacity(changed.len());
        for (key, replication) in changed {
            if let Some(part) = sent.parts.get_mut(&key) {
                before.push((key, std::mem::replace(&mut part.replication, replication)));
            }
        }
        let Some(outbox) = &self.controller else {
            // Kept as sent: the next session's first report is compared with it.
            for (key, _) in &before {
                self.unsent.note(key);
            }
            return;
        };
        if outbox
            .send(SatelliteMessage::Report {
                report: sent.report(),
            })
            .is_ok()
        {
            debug!(node = %self.node_name, "sent the replication state");
            // These parts now differ from what the passes found.
            for (key, _) in &before {
                self.unsent.note(key);
            }
        } else {
            for (key, replication) in before {
                if let Some(part) = sent.parts.get_mut(&key) {
                    part.replication = replication;
                }
            }
            self.controller = None;
        }
    }
}
