//! Free space as placement must see it: what the pool reported, minus what the controller has
//! already committed to it and the satellite has not created yet.
//!
//! A satellite reports a pool's free space as it finds it. Between a create being committed and
//! the satellite's next report, that figure does not know about the new volume, so two creates
//! in a row (or concurrent ones, planned one after the other under the mutation lock) would
//! both fit into the same free space, and the second would fail on the node with ENOSPC. So
//! for thick pools every volume the desired state puts in the pool that the node has not
//! reported as created (or reported smaller than desired) is subtracted. Thin pools allocate on
//! write; their free space is not reserved.

use ferrite_types::NodeName;

use super::placement::Runtime;
use crate::model::{Cluster, StoragePool};

/// KiB committed to `pool` on `node` that its last report does not show as allocated yet.
pub fn pending_kib(
    cluster: &Cluster,
    runtime: &Runtime,
    node: &NodeName,
    pool: &StoragePool,
) -> u64 {
    if pool.provider_kind.is_thin() || pool.is_diskless() {
        return 0;
    }
    let reported = runtime.get(node);
    cluster
        .resources_on_node(node)
        .filter(|(_, r)| r.holds_data() && r.storage_pool == pool.name)
        .map(|(rd, _)| {
            rd.volume_definitions
                .values()
                .filter(|vd| !vd.is_deleting())
                .map(|vd| {
                    let created = reported
                        .and_then(|r| r.volumes.get(rd.name.key()))
                        .and_then(|volumes| volumes.get(&vd.number.get()))
                        .and_then(|v| v.usable_size_kib)
                        .unwrap_or(0);
                    vd.size_kib.saturating_sub(created)
                })
                .sum::<u64>()
        })
        .sum()
}

/// The free space of `pool` on `node` for planning: reported free minus pending; `None` while
/// the node has not reported the pool.
pub fn free_kib(
    cluster: &Cluster,
    runtime: &Runtime,
    node: &NodeName,
    pool: &StoragePool,
) -> Option<u64> {
    let reported = runtime
        .get(node)?
        .pools
        .get(pool.name.key())?
        .free_capacity_kib?;
    Some(reported.saturating_sub(pending_kib(cluster, runtime, node, pool)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, tutorial_cluster};
    use crate::reported::NodeRuntime;
    use ferrite_proto::{NodeReport, PoolReport, VolumeReport};
    use ferrite_types::{ConnectionStatus, ProviderKind};

    #[test]
    fn committed_but_not_created_volumes_are_subtracted_from_thick_pools() {
        let mut cluster = tutorial_cluster();
        let node: NodeName = "node1".parse().unwrap();
        // Make node1's pool thick.
        let pool_name = "pool_ssd".parse().unwrap();
        let mut pool = cluster.nodes[&node].storage_pools[&pool_name].clone();
        pool.provider_kind = ProviderKind::File;
        cluster
            .nodes
            .get_mut(&node)
            .unwrap()
            .storage_pools
            .insert(pool_name.clone(), pool.clone());
        add_resource(&mut cluster, "res_a", "node1", "pool_ssd");
        add_resource(&mut cluster, "res_b", "node1", "pool_ssd");
        let size = cluster.resource_definitions[&"res_a".parse().unwrap()].total_size_kib();
        let mut runtime = Runtime::new();
        let mut reported = NodeRuntime {
            status: ConnectionStatus::Online,
            ..Default::default()
        };
        reported.absorb(NodeReport {
            storage_pools: vec![PoolReport {
                name: "pool_ssd".into(),
                provider_kind: ProviderKind::File,
                free_capacity_kib: Some(10 * size),
                total_capacity_kib: Some(20 * size),
                errors: vec![],
            }],
            // res_a is created; res_b is not yet.
            volumes: vec![VolumeReport {
                resource: "res_a".into(),
                volume_number: 0,
                device_path: None,
                allocated_size_kib: Some(size),
                usable_size_kib: Some(size),
                disk_state: "UpToDate".into(),
                error: None,
            }],
            ..Default::default()
        });
        runtime.insert(node.clone(), reported);
        assert_eq!(pending_kib(&cluster, &runtime, &node, &pool), size);
        assert_eq!(free_kib(&cluster, &runtime, &node, &pool), Some(9 * size));
        // A thin pool reserves nothing.
        pool.provider_kind = ProviderKind::FileThin;
        assert_eq!(pending_kib(&cluster, &runtime, &node, &pool), 0);
    }
}
