//! What satellites reported, as the rest of the controller reads it: per node, its connection
//! status, capabilities, pool capacities, volume, replication and snapshot states.
//!
//! A model-level type: the rules in `app` and the exposition in `metrics` read it without
//! knowing how it is kept up to date. The satellite links (`satellites`) write it as reports
//! arrive; it is not part of the persisted graph.

use std::borrow::Cow;
use std::collections::HashMap;

use ferrite_proto::{
    Capabilities, DeletedResource, DeletedVolume, NodeReport, OrphanReport, PoolReport,
    ReplicationReport, StateRefusal, VolumeReport,
};
use ferrite_types::{ConnectionStatus, NodeName};

use crate::model::VecMap;

/// What satellites reported, by node.
pub type Runtime = HashMap<NodeName, NodeRuntime>;

/// What the controller knows about a node's satellite right now.
#[derive(Debug, Clone)]
pub struct NodeRuntime {
    pub status: ConnectionStatus,
    /// Why the node is not online, when it is not.
    pub last_error: Option<String>,
    pub capabilities: Option<Capabilities>,
    pub hostname: Option<String>,
    /// Keyed by the pool's upper-cased name.
    pub pools: HashMap<String, PoolReport>,
    /// Keyed by the resource's upper-cased name, then the volume number.
    pub volumes: HashMap<String, VecMap<u16, ReportedVolume>>,
    /// What the replication engine reports of each replicated resource (role, in use, disk
    /// and peer states), keyed by the resource's upper-cased name.
    pub replication: HashMap<String, ReplicationReport>,
    pub applied_generation: Option<u64>,
    /// Problems the satellite reported that belong to no volume (e.g. failed deletions).
    pub errors: Vec<String>,
    /// Deletions the satellite confirmed, by the resource's upper-cased name.
    pub deleted_volumes: HashMap<String, Vec<DeletedVolume>>,
    pub deleted_resources: HashMap<String, DeletedResource>,
    /// Backing volumes the node keeps that nothing wants and nobody asked to delete.
    pub orphans: Vec<OrphanReport>,
    /// Why the satellite refuses its desired state, while it does (not for transient causes,
    /// which are retried).
    pub refusal: Option<StateRefusal>,
    /// Every snapshot volume the node's desired state holds: taken, or why not.
    pub snapshots: Vec<ferrite_proto::SnapshotReport>,
    /// Snapshots whose deletion the node confirmed.
    pub deleted_snapshots: Vec<ferrite_proto::DeletedSnapshot>,
    /// The resources whose writes the node holds for a snapshot's cut, with the holds' ids.
    pub io_suspended: Vec<ferrite_proto::HeldIo>,
}

/// One volume as its node reported it, kept as small as the controller can keep it: there is
/// one per replica (200,000 at 100,000 definitions of two). The resource's name is the key it
/// is kept under, and a disk state of DRBD's vocabulary is shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedVolume {
    /// The block device, e.g. `/dev/loop3` or `/dev/vg/r_00000`.
    pub device_path: Option<Box<str>>,
    pub allocated_size_kib: Option<u64>,
    pub usable_size_kib: Option<u64>,
    /// DRBD's vocabulary: UpToDate, Diskless, Failed, ...
    pub disk_state: Cow<'static, str>,
    /// Why the volume is not as desired, if it is not.
    pub error: Option<Box<str>>,
}

/// The disk states a satellite reports, kept once each; another word is kept as reported.
const DISK_STATES: &[&str] = &[
    "UpToDate",
    "Diskless",
    "Failed",
    "Unknown",
    "Outdated",
    "Inconsistent",
    "Consistent",
    "DUnknown",
    "Negotiating",
    "Attaching",
    "Detaching",
    "Created",
    "Missing",
];

impl From<VolumeReport> for ReportedVolume {
    fn from(report: VolumeReport) -> ReportedVolume {
        let disk_state = match DISK_STATES.iter().find(|s| **s == report.disk_state) {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(report.disk_state),
        };
        ReportedVolume {
            device_path: report.device_path.map(String::into_boxed_str),
            allocated_size_kib: report.allocated_size_kib,
            usable_size_kib: report.usable_size_kib,
            disk_state,
            error: report.error.map(String::into_boxed_str),
        }
    }
}

impl Default for NodeRuntime {
    fn default() -> Self {
        NodeRuntime {
            status: ConnectionStatus::Offline,
            last_error: None,
            capabilities: None,
            hostname: None,
            pools: HashMap::new(),
            volumes: HashMap::new(),
            replication: HashMap::new(),
            applied_generation: None,
            errors: Vec::new(),
            deleted_volumes: HashMap::new(),
            deleted_resources: HashMap::new(),
            orphans: Vec::new(),
            refusal: None,
            snapshots: Vec::new(),
            deleted_snapshots: Vec::new(),
            io_suspended: Vec::new(),
        }
    }
}

impl NodeRuntime {
    pub fn absorb(&mut self, report: NodeReport) {
        if report.generation.is_some() {
            self.applied_generation = report.generation;
        }
        self.pools = report
            .storage_pools
            .into_iter()
            .map(|p| (p.name.to_ascii_uppercase(), p))
            .collect();
        match report.only_resources {
            None => {
                self.volumes.clear();
                self.replication.clear();
                self.deleted_volumes.clear();
                self.deleted_resources.clear();
            }
            Some(resources) => {
                for resource in resources {
                    let key = resource.to_ascii_uppercase();
                    self.volumes.remove(&key);
                    self.replication.remove(&key);
                    self.deleted_volumes.remove(&key);
                    self.deleted_resources.remove(&key);
                }
            }
        }
        for volume in report.volumes {
            let key = volume.resource.to_ascii_uppercase();
            let number = volume.volume_number;
            self.volumes
                .entry(key)
                .or_default()
                .insert(number, ReportedVolume::from(volume));
        }
        for replicated in report.replication {
            self.replication
                .insert(replicated.resource.to_ascii_uppercase(), replicated);
        }
        for deleted in report.deleted_volumes {
            self.deleted_volumes
                .entry(deleted.resource.to_ascii_uppercase())
                .or_default()
                .push(deleted);
        }
        for deleted in report.deleted_resources {
            self.deleted_resources
                .insert(deleted.resource.to_ascii_uppercase(), deleted);
        }
        self.errors = report.errors;
        self.orphans = report.orphans;
        self.snapshots = report.snapshots;
        self.deleted_snapshots = report.deleted_snapshots;
        self.io_suspended = report.io_suspended;
    }

    /// The id of the node's hold of the writes of `resource` for a snapshot's cut, if it holds
    /// them.
    pub fn hold_of(&self, resource: &str) -> Option<u64> {
        if !self.is_online() {
            return None;
        }
        self.io_suspended
            .iter()
            .find(|h| h.resource.eq_ignore_ascii_case(resource))
            .map(|h| h.hold)
    }

    /// What the node reports of the volumes of snapshot `snapshot` (with UUID `uuid`) of
    /// `resource`.
    pub fn snapshot_volumes<'a>(
        &'a self,
        resource: &'a str,
        snapshot: &'a str,
        uuid: &'a str,
    ) -> impl Iterator<Item = &'a ferrite_proto::SnapshotReport> + 'a {
        self.snapshots.iter().filter(move |s| {
            s.uuid == uuid
                && s.resource.eq_ignore_ascii_case(resource)
                && s.snapshot.eq_ignore_ascii_case(snapshot)
        })
    }

    /// Whether the node confirmed the deletion of the snapshot with this UUID.
    pub fn deleted_snapshot(&self, resource: &str, snapshot: &str, uuid: &str) -> bool {
        self.deleted_snapshots.iter().any(|d| {
            d.uuid == uuid
                && d.resource.eq_ignore_ascii_case(resource)
                && d.snapshot.eq_ignore_ascii_case(snapshot)
        })
    }

    /// Whether the node confirmed the deletion of volume `number` of `resource` with this
    /// identity.
    pub fn deleted_volume(&self, resource: &str, number: u16, identity: &str) -> bool {
        self.deleted_volumes
            .get(&resource.to_ascii_uppercase())
            .is_some_and(|done| {
                done.iter()
                    .any(|d| d.volume_number == number && d.identity == identity)
            })
    }

    /// Whether the node confirmed the deletion of the resource with this UUID.
    pub fn deleted_resource(&self, resource: &str, uuid: &str) -> bool {
        self.deleted_resources
            .get(&resource.to_ascii_uppercase())
            .is_some_and(|d| d.uuid == uuid)
    }

    /// What the replication engine reports of `resource`, if anything.
    pub fn replication(&self, resource: &str) -> Option<&ReplicationReport> {
        self.replication.get(&resource.to_ascii_uppercase())
    }

    /// Whether the engine reports `resource` in use on this node (a Primary: an NBD client or
    /// an opened block device). Only a current report counts: an offline node's last word may
    /// be stale, and is not taken as in use.
    pub fn in_use(&self, resource: &str) -> bool {
        self.is_online() && self.replication(resource).is_some_and(|r| r.in_use)
    }

    /// Whether what it reports can be trusted as current: connected and taking its state.
    pub fn is_online(&self) -> bool {
        self.status == ConnectionStatus::Online
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(disk_state: &str, error: Option<&str>) -> VolumeReport {
        VolumeReport {
            resource: "web".to_string(),
            volume_number: 0,
            device_path: Some("/dev/loop3".to_string()),
            allocated_size_kib: Some(0),
            usable_size_kib: Some(4096),
            disk_state: disk_state.to_string(),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_volume_is_kept_as_reported() {
        let kept = ReportedVolume::from(report("UpToDate", None));
        assert!(matches!(kept.disk_state, Cow::Borrowed("UpToDate")));
        assert_eq!(kept.device_path.as_deref(), Some("/dev/loop3"));
        assert_eq!(
            (kept.allocated_size_kib, kept.usable_size_kib),
            (Some(0), Some(4096))
        );
        assert_eq!(kept.error, None);

        // A word outside the known ones, and an error, are kept as they came.
        let odd = ReportedVolume::from(report("Sideways", Some("lost")));
        assert!(matches!(odd.disk_state, Cow::Owned(ref s) if s == "Sideways"));
        assert_eq!(odd.error.as_deref(), Some("lost"));
    }
}
