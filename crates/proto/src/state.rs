//! Desired state (controller → satellite) and reports (satellite → controller).

use std::collections::BTreeMap;

use ferrite_types::{LayerKind, ProviderKind};
use serde::{Deserialize, Serialize};

/// A node's desired state, stamped with a generation.
///
/// The generation is the controller store's revision of the change, so it only ever grows,
/// across controller restarts too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    pub generation: u64,
    /// `None`: this is the node's whole state. `Some(g)`: a delta on top of generation `g`.
    #[serde(default)]
    pub base_generation: Option<u64>,
    /// The node's storage pools, always all of them.
    pub storage_pools: Vec<PoolSpec>,
    /// Full state: every resource on the node. Delta: the resources that changed.
    pub resources: Vec<ResourceSpec>,
    /// Delta only: resources that are gone from the node.
    #[serde(default)]
    pub removed_resources: Vec<String>,
}

impl DesiredState {
    /// Whether this is a whole state rather than a delta.
    pub fn is_full(&self) -> bool {
        self.base_generation.is_none()
    }
}

/// A storage pool as the satellite needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    pub provider_kind: ProviderKind,
    /// What the provider allocates from (`StorDriver/StorPoolName`): a volume group, a
    /// `vg/thinpool`, a zpool or a directory. Empty for DISKLESS.
    pub pool_name: String,
    #[serde(default)]
    pub props: BTreeMap<String, String>,
}

/// A resource on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub name: String,
    /// The layer stack, top first; always ends with STORAGE.
    pub layers: Vec<LayerKind>,
    /// No local disk: every volume is in the node's diskless pool.
    pub diskless: bool,
    pub volumes: Vec<VolumeSpec>,
}

/// A volume of a resource on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub volume_number: u16,
    /// Usable size in KiB.
    pub size_kib: u64,
    /// The storage pool the backing volume comes from.
    pub storage_pool: String,
}

/// What a satellite can run, and for what it cannot, why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub storage_providers: Vec<ProviderKind>,
    pub unsupported_providers: BTreeMap<ProviderKind, Vec<String>>,
    pub resource_layers: Vec<LayerKind>,
    pub unsupported_layers: BTreeMap<LayerKind, Vec<String>>,
}

impl Capabilities {
    pub fn supports_provider(&self, kind: ProviderKind) -> bool {
        self.storage_providers.contains(&kind)
    }

    pub fn supports_layer(&self, kind: LayerKind) -> bool {
        self.resource_layers.contains(&kind)
    }
}

/// The actual state of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The generation the satellite has converged to, if any.
    pub generation: Option<u64>,
    pub storage_pools: Vec<PoolReport>,
    pub volumes: Vec<VolumeReport>,
    /// `None`: `volumes` is every volume of the node. `Some(names)`: `volumes` holds only the
    /// volumes of these resources (those a delta changed or removed); the node's other volumes
    /// are as last reported. Keeps the answer to a delta small on a node with thousands of
    /// volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_resources: Option<Vec<String>>,
    /// Problems of the node that belong to no reported volume, e.g. a backing volume that is no
    /// longer desired but could not be deleted. The satellite keeps retrying them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A storage pool's capacity, or what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolReport {
    pub name: String,
    pub provider_kind: ProviderKind,
    /// KiB; `None` when it could not be read (see `errors`) or for DISKLESS.
    pub free_capacity_kib: Option<u64>,
    pub total_capacity_kib: Option<u64>,
    /// Why the pool cannot be used, e.g. "volume group 'vg_ssd' not found".
    #[serde(default)]
    pub errors: Vec<String>,
}

/// A volume of a resource as it is on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeReport {
    pub resource: String,
    pub volume_number: u16,
    /// The block device, e.g. `/dev/loop3` or `/dev/vg/r_00000`.
    pub device_path: Option<String>,
    pub allocated_size_kib: Option<u64>,
    pub usable_size_kib: Option<u64>,
    /// DRBD's vocabulary: UpToDate, Diskless, Failed, ...
    pub disk_state: String,
    /// Why the volume is not as desired, if it is not.
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_serialize_with_string_keys() {
        let mut caps = Capabilities {
            storage_providers: vec![ProviderKind::File],
            resource_layers: vec![LayerKind::Storage],
            ..Default::default()
        };
        caps.unsupported_providers.insert(
            ProviderKind::Zfs,
            vec!["zfs: command not found".to_string()],
        );
        let json = serde_json::to_value(&caps).unwrap();
        assert_eq!(
            json["unsupported_providers"]["ZFS"][0],
            "zfs: command not found"
        );
        let back: Capabilities = serde_json::from_value(json).unwrap();
        assert_eq!(back, caps);
    }
}
