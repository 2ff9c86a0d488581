//! Fixtures for the unit tests of the app layer.

use ferrite_types::rest;
use ferrite_types::{EncryptionType, NodeType, ProviderKind};

use super::Plan;
use crate::model::{
    self, Cluster, Op, Resource, ResourceDefinition, ResourceGroup, VolumeDefinition,
};

/// Applies a plan's ops as the core would after committing them, and checks that the graph
/// still holds together as the store's foreign keys require.
pub fn apply(cluster: &mut Cluster, plan: Plan) {
    for op in plan.ops {
        op.apply(cluster);
    }
    cluster.revision += 1;
    let dangling = cluster.dangling_references();
    assert!(
        dangling.is_empty(),
        "the plan left references the store would refuse: {dangling:?}"
    );
}

pub fn node_body(name: &str, address: &str) -> rest::Node {
    rest::Node {
        name: name.into(),
        node_type: NodeType::Combined,
        flags: vec![],
        props: Default::default(),
        net_interfaces: vec![rest::NetInterface {
            name: "default".into(),
            address: address.into(),
            satellite_port: Some(3366),
            satellite_encryption_type: Some(EncryptionType::Plain),
            is_active: Some(true),
            uuid: None,
        }],
        connection_status: None,
        connection_status_reason: None,
        uuid: None,
        storage_providers: None,
        resource_layers: None,
        unsupported_providers: None,
        unsupported_layers: None,
        eviction_timestamp: None,
    }
}

/// Four nodes, each with a FILE_THIN pool `pool_ssd`, the default resource group and
/// `my_ssd_group` (place count 2, pool_ssd) with one volume group.
pub fn tutorial_cluster() -> Cluster {
    let mut cluster = Cluster::default();
    for i in 1..=4 {
        let plan = super::nodes::create(
            &cluster,
            &node_body(&format!("node{i}"), &format!("127.0.0.1{i}")),
        )
        .unwrap();
        apply(&mut cluster, plan);
        let node = format!("node{i}").parse().unwrap();
        let pool = model::StoragePool {
            name: "pool_ssd".parse().unwrap(),
            uuid: model::new_uuid(),
            provider_kind: ProviderKind::FileThin,
            props: [(
                ferrite_types::PROP_STOR_POOL_NAME.to_string(),
                format!("/tmp/pools/node{i}"),
            )]
            .into(),
            shared_space: None,
            external_locking: false,
        };
        Op::PutStoragePool { node, pool }.apply(&mut cluster);
    }
    for (name, filter) in [
        (
            ferrite_types::DEFAULT_RESOURCE_GROUP,
            rest::AutoSelectFilter::default(),
        ),
        (
            "my_ssd_group",
            rest::AutoSelectFilter {
                place_count: Some(2),
                storage_pool_list: Some(vec!["pool_ssd".into()]),
                ..Default::default()
            },
        ),
    ] {
        let mut group = ResourceGroup {
            name: name.parse().unwrap(),
            uuid: model::new_uuid(),
            description: None,
            props: Default::default(),
            select_filter: filter,
            peer_slots: None,
            volume_groups: Default::default(),
        };
        if name == "my_ssd_group" {
            group.volume_groups.insert(
                0u16.into(),
                model::VolumeGroup {
                    number: 0u16.into(),
                    uuid: model::new_uuid(),
                    props: Default::default(),
                    flags: vec![],
                },
            );
        }
        Op::PutResourceGroup(group).apply(&mut cluster);
    }
    cluster
}

/// Adds a 1 GiB resource definition `name` (if missing) and places it on `node` in `pool`.
pub fn add_resource(cluster: &mut Cluster, name: &str, node: &str, pool: &str) {
    let rd_name: ferrite_types::ResourceName = name.parse().unwrap();
    if cluster.resource_definition(&rd_name).is_none() {
        let mut rd = ResourceDefinition {
            name: rd_name.clone(),
            uuid: model::new_uuid(),
            external_name: None,
            props: Default::default(),
            flags: vec![],
            resource_group: ferrite_types::DEFAULT_RESOURCE_GROUP.parse().unwrap(),
            layer_stack: vec![ferrite_types::LayerKind::Storage],
            secret: None,
            rollback: None,
            volume_definitions: Default::default(),
            resources: Default::default(),
        };
        rd.volume_definitions.insert(
            0u16.into(),
            VolumeDefinition {
                number: 0u16.into(),
                uuid: model::new_uuid(),
                size_kib: 1 << 20,
                props: Default::default(),
                flags: vec![],
                minor: None,
            },
        );
        Op::PutResourceDefinition(rd).apply(cluster);
    }
    let pool: ferrite_types::StorPoolName = pool.parse().unwrap();
    let placed = Resource {
        node: node.parse().unwrap(),
        uuid: model::new_uuid(),
        props: Default::default(),
        diskless: pool == model::default_diskless_pool(),
        storage_pool: pool,
        create_timestamp: 0,
        phase: Default::default(),
        node_id: None,
        port: None,
        tiebreaker: false,
        restore_from: None,
        inactive: false,
        evacuating: false,
        evacuation_replaced: false,
    };
    Op::PutResource {
        resource: rd_name,
        placed,
    }
    .apply(cluster);
}

/// What satellites would report for `cluster` if every node were online and every diskful
/// volume UpToDate.
pub fn all_up_to_date(cluster: &Cluster) -> crate::app::placement::Runtime {
    use crate::reported::NodeRuntime;
    use ferrite_proto::{NodeReport, VolumeReport};
    let mut runtime = crate::app::placement::Runtime::new();
    for node in cluster.nodes.keys() {
        let volumes = cluster
            .resources_on_node(node)
            .filter(|(_, r)| r.holds_data())
            .flat_map(|(rd, _)| {
                rd.volume_definitions.values().map(|vd| VolumeReport {
                    resource: rd.name.to_string(),
                    volume_number: vd.number.get(),
                    device_path: None,
                    allocated_size_kib: None,
                    usable_size_kib: Some(vd.size_kib),
                    disk_state: "UpToDate".to_string(),
                    error: None,
                })
            })
            .collect();
        let mut reported = NodeRuntime {
            status: ferrite_types::ConnectionStatus::Online,
            ..Default::default()
        };
        reported.absorb(NodeReport {
            volumes,
            ..Default::default()
        });
        runtime.insert(node.clone(), reported);
    }
    runtime
}

/// What satellites would report for `cluster` if every node were online, ran the storage
/// providers of its pools and the replication `engines` (the others unsupported, with a
/// reason), had 100 GiB free in every pool, and every diskful volume were UpToDate (in the
/// storage layer and, for replicated resources, in their engine, without peers).
pub fn engines_runtime(
    cluster: &Cluster,
    engines: &[ferrite_types::LayerKind],
) -> crate::app::placement::Runtime {
    let mut runtime = all_up_to_date(cluster);
    for (name, node) in &cluster.nodes {
        let reported = runtime.get_mut(name).expect("every node is reported");
        reported.capabilities = Some(capabilities(engines));
        let replication = cluster
            .resources_on_node(name)
            .filter(|(rd, r)| rd.is_replicated() && !r.is_deleting())
            .map(|(rd, r)| engine_report(rd, r))
            .collect();
        reported.absorb(ferrite_proto::NodeReport {
            only_resources: Some(vec![]),
            replication,
            ..Default::default()
        });
        for pool in node.storage_pools.values() {
            reported.pools.insert(
                pool.name.key().to_string(),
                ferrite_proto::PoolReport {
                    name: pool.name.to_string(),
                    provider_kind: pool.provider_kind,
                    free_capacity_kib: Some(100 << 20),
                    total_capacity_kib: Some(100 << 20),
                    errors: vec![],
                },
            );
        }
    }
    runtime
}

/// What an engine reports of a member that is Secondary, has quorum and whose volumes are
/// UpToDate (`Diskless` without a disk).
pub fn engine_report(
    rd: &ResourceDefinition,
    resource: &Resource,
) -> ferrite_proto::ReplicationReport {
    ferrite_proto::ReplicationReport {
        resource: rd.name.to_string(),
        engine: match rd.replication_layer() {
            Some(ferrite_types::LayerKind::Drbd) => ferrite_proto::ReplicationEngine::Drbd,
            _ => ferrite_proto::ReplicationEngine::Mirror,
        },
        role: ferrite_proto::Role::Secondary,
        in_use: false,
        quorum: true,
        volumes: rd
            .volume_definitions
            .values()
            .map(|vd| ferrite_proto::ReplicatedVolumeReport {
                volume_number: vd.number.get(),
                minor: vd.minor,
                disk_state: if resource.holds_data() {
                    "UpToDate"
                } else {
                    "Diskless"
                }
                .into(),
                device_path: Some(format!("/dev/ferrite/{}/{}", rd.name, vd.number)),
                nbd_uri: None,
                nbd_tcp_uri: None,
                usable_size_kib: Some(vd.size_kib),
            })
            .collect(),
        peers: vec![],
        error: None,
        may_promote: None,
        promotion_score: None,
    }
}

/// A satellite's capabilities: FILE_THIN, DISKLESS, STORAGE and the replication `engines`.
pub fn capabilities(engines: &[ferrite_types::LayerKind]) -> ferrite_proto::Capabilities {
    use ferrite_types::LayerKind;
    let mut caps = ferrite_proto::Capabilities {
        storage_providers: vec![ProviderKind::Diskless, ProviderKind::FileThin],
        resource_layers: vec![LayerKind::Storage],
        ..Default::default()
    };
    for layer in [LayerKind::Drbd, LayerKind::Mirror] {
        if engines.contains(&layer) {
            caps.resource_layers.push(layer);
        } else {
            caps.unsupported_layers.insert(
                layer,
                vec![
                    match layer {
                        LayerKind::Drbd => "DRBD kernel module not loaded (/proc/drbd missing)",
                        _ => "ferrite-mirrord not found next to the satellite or in PATH",
                    }
                    .to_string(),
                ],
            );
        }
    }
    caps
}

/// Completes a plan as the core does (engine, tiebreakers, allocations) and applies it;
/// returns its answer and what it marked for deletion.
pub fn commit(
    cluster: &mut Cluster,
    runtime: &crate::app::placement::Runtime,
    plan: impl FnOnce(&Cluster, &crate::app::placement::Runtime) -> Result<Plan, super::Failure>,
) -> (Vec<ferrite_types::ApiCallRc>, Vec<super::deletions::Marked>) {
    let mut plan = plan(cluster, runtime).unwrap_or_else(|f| panic!("plan refused: {f:?}"));
    super::finalize(cluster, runtime, &mut plan)
        .unwrap_or_else(|f| panic!("plan not completed: {f:?}"));
    let replies = plan.replies.clone();
    let deletions = plan.deletions.clone();
    apply(cluster, plan);
    (replies, deletions)
}

/// Gives `my_ssd_group` the layer list `layers` (e.g. `["drbd"]`).
pub fn replicated_group(cluster: &mut Cluster, layers: &[&str]) {
    let name: ferrite_types::ResourceGroupName = "my_ssd_group".parse().unwrap();
    let group = cluster.resource_groups.get_mut(&name).unwrap();
    group.select_filter.layer_stack = Some(layers.iter().map(|l| l.to_string()).collect());
}

/// Spawns `name` (1 GiB) from `my_ssd_group`.
pub fn spawn(
    cluster: &Cluster,
    runtime: &crate::app::placement::Runtime,
    name: &str,
) -> Result<Plan, super::Failure> {
    super::resource_groups::spawn(
        cluster,
        runtime,
        "my_ssd_group",
        &rest::ResourceGroupSpawn {
            resource_definition_name: name.into(),
            volume_sizes: vec![1 << 20],
            ..Default::default()
        },
    )
}

/// `cluster` as a restarted controller loads it: every object written to a new store in `dir`,
/// the store closed, opened again and read back as `Controller::start` reads it.
pub fn reloaded(cluster: &Cluster, dir: &std::path::Path) -> Cluster {
    let mut ops: Vec<Op> = cluster
        .props
        .iter()
        .map(|(key, value)| Op::SetControllerProp {
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    for node in cluster.nodes.values() {
        ops.push(Op::PutNode(node.clone()));
        for pool in node.storage_pools.values() {
            ops.push(Op::PutStoragePool {
                node: node.name.clone(),
                pool: pool.clone(),
            });
        }
    }
    for group in cluster.resource_groups.values() {
        ops.push(Op::PutResourceGroup(group.clone()));
        for volume_group in group.volume_groups.values() {
            ops.push(Op::PutVolumeGroup {
                group: group.name.clone(),
                volume_group: volume_group.clone(),
            });
        }
    }
    for rd in cluster.resource_definitions.values() {
        ops.push(Op::PutResourceDefinition(rd.clone()));
        for vd in rd.volume_definitions.values() {
            ops.push(Op::PutVolumeDefinition {
                resource: rd.name.clone(),
                volume_definition: vd.clone(),
            });
        }
        for resource in rd.resources.values() {
            ops.push(Op::PutResource {
                resource: rd.name.clone(),
                placed: resource.clone(),
            });
        }
    }
    let changes: Vec<_> = ops
        .iter()
        .flat_map(|op| op.to_changes(&Cluster::default()))
        .collect();
    ferrite_store::Store::open(
        ferrite_store::DataDirLock::acquire(dir).expect("lock"),
        "test-cluster",
    )
    .expect("store opens")
    .commit(&changes)
    .expect("commit");
    let (store, check) = ferrite_store::Store::open_checking_pages_aside(
        ferrite_store::DataDirLock::acquire(dir).expect("lock"),
        "test-cluster",
    )
    .expect("store opens");
    Cluster::load(&store, check).expect("cluster loads")
}

/// `web` and `db` replicated by DRBD from `my_ssd_group` (two replicas and a tiebreaker
/// each, on three of the four nodes), and `plain`, unreplicated, on node1.
pub fn replicated_cluster() -> Cluster {
    let mut cluster = tutorial_cluster();
    replicated_group(&mut cluster, &["drbd", "storage"]);
    let runtime = engines_runtime(&cluster, &[ferrite_types::LayerKind::Drbd]);
    commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
    commit(&mut cluster, &runtime, |c, r| spawn(c, r, "db"));
    add_resource(&mut cluster, "plain", "node1", "pool_ssd");
    cluster
}
