//! Nodes and their network interfaces: create, modify, delete, lost.

use std::net::IpAddr;

use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use ferrite_types::{ConnectionStatus, EncryptionType, NetInterfaceName, NodeName, NodeType};

use super::placement::Runtime;
use super::{
    Context, Failure, Object, Operation, Plan, deletions, not_found, parse_name, properties,
};
use crate::model::{self, Cluster, NetInterface, Node, Op, StoragePool};

/// The satellite port when a request gives none (LINSTOR's defaults, as the ports below).
pub const DEFAULT_SATELLITE_PORT: u16 = 3366;
/// The satellite port over SSL.
pub const DEFAULT_SATELLITE_SSL_PORT: u16 = 3367;
/// The port of a controller node's interface.
pub const DEFAULT_CONTROLLER_PORT: u16 = 3376;
/// The port of a controller node's interface over SSL.
pub const DEFAULT_CONTROLLER_SSL_PORT: u16 = 3377;

const CREATE: Context = Context::new(Operation::Create, Object::Node);
const MODIFY: Context = Context::new(Operation::Modify, Object::Node);
const DELETE: Context = Context::new(Operation::Delete, Object::Node);

/// Finds a node or refuses with LINSTOR's not-found error.
pub fn find<'a>(ctx: &Context, cluster: &'a Cluster, name: &str) -> Result<&'a Node, Failure> {
    let parsed: NodeName = parse_name(ctx, code::FAIL_INVLD_NODE_NAME, name)?;
    cluster.node(&parsed).ok_or_else(|| {
        not_found(
            ctx,
            code::FAIL_NOT_FOUND_NODE,
            "Node",
            name,
            "Check the name with 'ferrite node list'.",
        )
    })
}

/// LINSTOR's port for an interface created without one: the satellite's port for a node
/// with a satellite, the controller's for a controller node; each for plain or SSL.
pub fn default_port(node_type: NodeType, encryption: EncryptionType) -> u16 {
    match (node_type.has_satellite(), encryption) {
        (true, EncryptionType::Ssl) => DEFAULT_SATELLITE_SSL_PORT,
        (true, _) => DEFAULT_SATELLITE_PORT,
        (false, EncryptionType::Ssl) => DEFAULT_CONTROLLER_SSL_PORT,
        (false, _) => DEFAULT_CONTROLLER_PORT,
    }
}

fn net_interface(
    ctx: &Context,
    node_type: NodeType,
    body: &rest::NetInterface,
) -> Result<NetInterface, Failure> {
    let name: NetInterfaceName = parse_name(ctx, code::FAIL_INVLD_NET_NAME, &body.name)?;
    let address: IpAddr = body.address.parse().map_err(|_| {
        ctx.error(
            code::FAIL_INVLD_NET_ADDR,
            format!("Invalid network address '{}'.", body.address),
        )
        .cause("The address is not an IPv4 or IPv6 address.")
        .correction("Give the node's IP address, e.g. 10.0.0.1.")
    })?;
    let encryption = body
        .satellite_encryption_type
        .unwrap_or(EncryptionType::Plain);
    let port = match body.satellite_port {
        None => default_port(node_type, encryption),
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                Failure::from(
                    ctx.error(
                        code::FAIL_INVLD_NET_PORT,
                        format!("Invalid satellite port {port}."),
                    )
                    .correction("Give a port between 1 and 65535 (the default is 3366)."),
                )
            })?,
    };
    if encryption == EncryptionType::Ssl {
        return Err(ctx
            .error(
                code::FAIL_INVLD_ENCRYPT_TYPE,
                "SSL connections to satellites are not supported yet.",
            )
            .correction("Use the plain communication type.")
            .into());
    }
    Ok(NetInterface {
        name,
        uuid: model::new_uuid(),
        address,
        satellite_port: port,
        encryption,
    })
}

/// A warning when another node already uses the satellite address. LINSTOR allows it (a
/// node may be registered twice while it is moved, or several nodes may sit behind one
/// address with ports of their own), and so does Ferrite: a satellite serves the one node it
/// was registered as and refuses the controller's link for any other name, which then shows
/// why in `connection_status_reason`.
fn address_shared(
    ctx: &Context,
    cluster: &Cluster,
    this: &NodeName,
    interface: &NetInterface,
) -> Option<ferrite_types::ApiCallRc> {
    let wanted = std::net::SocketAddr::new(interface.address, interface.satellite_port);
    let others: Vec<String> = cluster
        .nodes
        .values()
        .filter(|n| &n.name != this && n.satellite_address() == Some(wanted))
        .map(|n| n.name.to_string())
        .collect();
    (!others.is_empty()).then(|| {
        ctx.warn(
            code::WARN_NOT_CONNECTED,
            format!(
                "Node '{}' uses the satellite address {wanted}, as node(s) {} already do.",
                this,
                others.join(", ")
            ),
        )
        .cause(
            "A satellite serves one node and refuses a controller that calls it by another name.",
        )
        .correction("Give each node the address of its own satellite, or a port of its own.")
    })
}

/// `POST /v1/nodes`.
pub fn create(cluster: &Cluster, body: &rest::Node) -> Result<Plan, Failure> {
    let ctx = &CREATE;
    let name: NodeName = parse_name(ctx, code::FAIL_INVLD_NODE_NAME, &body.name)?;
    if let Some(existing) = cluster.node(&name) {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_NODE,
                format!("Node '{}' already exists.", existing.name),
            )
            .correction("Choose another name, or delete the existing node first.")
            .into());
    }
    if body.net_interfaces.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_INVLD_NET_ADDR,
                format!("Node '{name}' has no network interface."),
            )
            .cause("The controller reaches a node's satellite through its network interface.")
            .correction("Give the node's IP address, e.g. 'ferrite node create node1 10.0.0.1'.")
            .into());
    }
    let mut interfaces: Vec<NetInterface> = Vec::new();
    for body_interface in &body.net_interfaces {
        let interface = net_interface(ctx, body.node_type, body_interface)?;
        if interfaces.iter().any(|i| i.name == interface.name) {
            return Err(ctx
                .error(
                    code::FAIL_EXISTS_NET_IF,
                    format!("Network interface '{}' is given twice.", interface.name),
                )
                .correction("Give each interface of a node its own name.")
                .into());
        }
        interfaces.push(interface);
    }
    let active_index = body
        .net_interfaces
        .iter()
        .position(|i| i.is_active == Some(true))
        .unwrap_or(0);
    let active = interfaces[active_index].name.clone();
    let shared = body
        .node_type
        .has_satellite()
        .then(|| address_shared(ctx, cluster, &name, &interfaces[active_index]))
        .flatten();
    properties::check_all(ctx, &body.props)?;
    let mut props = body.props.clone();
    props.insert("CurStltConnName".to_string(), active.to_string());

    let node = Node {
        name: name.clone(),
        uuid: model::new_uuid(),
        node_type: body.node_type,
        props,
        net_interfaces: interfaces,
        active_net_interface: active,
        flags: Vec::new(),
        storage_pools: Default::default(),
    };
    let diskless_pool = StoragePool {
        name: model::default_diskless_pool(),
        uuid: model::new_uuid(),
        provider_kind: ferrite_types::ProviderKind::Diskless,
        props: Default::default(),
        shared_space: None,
        external_locking: false,
    };
    let mut plan = Plan::new();
    plan.replies.extend(shared);
    plan.op(Op::PutNode(node))
        .op(Op::PutStoragePool {
            node: name.clone(),
            pool: diskless_pool,
        })
        .reply(
            ctx.created(format!("New node '{name}' registered."))
                .obj_ref("Node", name.as_str()),
        );
    if body.node_type.has_satellite() {
        plan.wait_online.push(name);
    }
    Ok(plan)
}

/// `PUT /v1/nodes/{node}`.
pub fn modify(cluster: &Cluster, node: &str, body: &rest::NodeModify) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let current = find(ctx, cluster, node)?;
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut updated = current.clone();
    updated.props = edited.props;
    if let Some(node_type) = body.node_type {
        updated.node_type = node_type;
    }
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    plan.op(Op::PutNode(updated)).reply(
        ctx.modified(format!("Node '{}' modified.", current.name))
            .obj_ref("Node", current.name.as_str()),
    );
    Ok(plan)
}

/// `DELETE /v1/nodes/{node}`, as LINSTOR: a node without resources goes at once; one with
/// resources is marked `DELETE` and so is each of its resources; the node deletes their volumes
/// and confirms, and the node goes with its last resource (`deletions::finish`). Refused while
/// the node holds snapshots (LINSTOR's `FAIL_EXISTS_SNAPSHOT`), while one of its resources is in
/// use, and when one of them holds the only UpToDate copy others still need. An offline node
/// stays marked until it comes back, or until `node lost`.
pub fn delete(cluster: &Cluster, runtime: &Runtime, node: &str) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let current = match find(ctx, cluster, node) {
        Err(failure) if super::is_not_found(&failure, code::FAIL_NOT_FOUND_NODE) => {
            return Ok(super::nothing_to_delete(
                ctx,
                format!("Deletion of node '{node}' had no effect."),
                format!("Node '{node}' does not exist."),
            ));
        }
        found => found?,
    };
    let snapshots: Vec<String> = cluster
        .snapshot_definitions
        .values()
        .filter(|d| d.snapshots.contains_key(&current.name))
        .map(|d| format!("'{}' of '{}'", d.name, d.resource))
        .collect();
    if !snapshots.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_SNAPSHOT,
                format!("Cannot delete '{}' because it has snapshots.", current.name),
            )
            .cause(format!("Snapshots on the node: {}.", snapshots.join(", ")))
            .correction(format!(
                "Delete them first ('ferrite snapshot delete RESOURCE SNAPSHOT --nodes {}').",
                current.name
            ))
            .into());
    }
    let resources: Vec<(&model::ResourceDefinition, &model::Resource)> =
        cluster.resources_on_node(&current.name).collect();
    let mut plan = Plan::new();
    if resources.is_empty() {
        plan.op(Op::DeleteNode(current.name.clone())).reply(
            ctx.deleted(format!("Node '{}' deleted.", current.name))
                .obj_ref("Node", current.name.as_str()),
        );
        return Ok(plan);
    }
    let rsc_ctx = Context::new(Operation::Delete, Object::Resource);
    for (rd, resource) in &resources {
        if resource.is_deleting() {
            continue;
        }
        let action = format!("delete node '{}' with resource '{}'", current.name, rd.name);
        super::resources::refuse_if_in_use(&rsc_ctx, rd, resource, runtime, &action)?;
        deletions::check_keeps_up_to_date_replica(&rsc_ctx, rd, runtime, &resource.node, &action)?;
    }
    let mut marked = current.clone();
    if !marked.is_deleting() {
        marked.flags.push(model::FLAG_DELETE.to_string());
    }
    plan.op(Op::PutNode(marked)).reply(
        ctx.deleted(format!("Node '{}' marked for deletion.", current.name))
            .details(format!("Node '{}' UUID is: {}", current.name, current.uuid))
            .obj_ref("Node", current.name.as_str()),
    );
    for (rd, resource) in resources {
        if !resource.is_deleting() {
            let mut updated = resource.clone();
            updated.phase = model::ResourcePhase::Deleting;
            plan.op(Op::PutResource {
                resource: rd.name.clone(),
                placed: updated,
            });
        }
        plan.deletions.push(deletions::Marked::Resource {
            resource: rd.name.clone(),
            node: current.name.clone(),
        });
    }
    plan.deletions.push(deletions::Marked::Node {
        node: current.name.clone(),
    });
    Ok(plan)
}

/// `DELETE /v1/nodes/{node}/lost`: forget a node that will not come back, with its resources.
/// Nothing is sent to its satellite, so nothing on it is deleted: if it does come back and is
/// registered again, its volumes are kept there as orphans. Refused while its satellite is
/// connected (a node that answers is not lost: delete its resources instead), and when one of
/// its resources holds the only UpToDate copy others still need.
pub fn lost(cluster: &Cluster, runtime: &Runtime, node: &str) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let current = find(ctx, cluster, node)?;
    if let Some(status) = runtime.get(&current.name).map(|r| r.status).filter(|s| {
        matches!(
            s,
            ConnectionStatus::Online
                | ConnectionStatus::Connected
                | ConnectionStatus::FullSyncFailed
        )
    }) {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Node '{}' is not lost: its satellite is connected ({status}).",
                    current.name
                ),
            )
            .cause(
                "Declaring a node lost forgets its resources without deleting anything on it; \
                 that is for nodes that are gone for good.",
            )
            .correction(format!(
                "Delete its resources ('ferrite resource delete {} RESOURCE'), then 'ferrite node \
                 delete {}'. If it is really gone, stop its satellite first.",
                current.name, current.name
            ))
            .into());
    }
    let mut plan = Plan::new();
    for (rd, resource) in cluster.resources_on_node(&current.name) {
        deletions::check_keeps_up_to_date_replica(
            &Context::new(Operation::Delete, Object::Node),
            rd,
            runtime,
            &resource.node,
            &format!("declare node '{}' lost", current.name),
        )?;
        plan.op(Op::DeleteResource {
            resource: rd.name.clone(),
            node: current.name.clone(),
        });
        plan.reply(
            Context::new(Operation::Delete, Object::Resource)
                .deleted(format!(
                    "Resource '{}' on lost node '{}' forgotten.",
                    rd.name, current.name
                ))
                .obj_ref("RscDfn", rd.name.as_str())
                .obj_ref("Node", current.name.as_str()),
        );
        if rd.is_deleting() {
            plan.deletions.push(deletions::Marked::ResourceDefinition {
                resource: rd.name.clone(),
            });
        }
    }
    // Its snapshots go with it: their volumes were on the lost node.
    for definition in cluster
        .snapshot_definitions
        .values()
        .filter(|d| d.snapshots.contains_key(&current.name))
    {
        plan.op(Op::DeleteSnapshot {
            resource: definition.resource.clone(),
            snapshot: definition.name.clone(),
            node: current.name.clone(),
        })
        .reply(
            Context::new(Operation::Delete, Object::Snapshot)
                .deleted(format!(
                    "Snapshot '{}' of '{}' on lost node '{}' forgotten.",
                    definition.name, definition.resource, current.name
                ))
                .obj_ref("RscDfn", definition.resource.as_str())
                .obj_ref("Node", current.name.as_str()),
        );
    }
    plan.op(Op::DeleteNode(current.name.clone())).reply(
        ctx.deleted(format!("Node '{}' deleted as lost.", current.name))
            .obj_ref("Node", current.name.as_str()),
    );
    Ok(plan)
}

/// `POST /v1/nodes/{node}/net-interfaces`.
pub fn create_net_interface(
    cluster: &Cluster,
    node: &str,
    body: &rest::NetInterface,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Create, Object::NetInterface);
    let current = find(ctx, cluster, node)?;
    let interface = net_interface(ctx, current.node_type, body)?;
    if current.net_interface(&interface.name).is_some() {
        return Err(ctx
            .error(
                code::FAIL_EXISTS_NET_IF,
                format!(
                    "Network interface '{}' already exists on node '{}'.",
                    interface.name, current.name
                ),
            )
            .correction("Choose another name or modify the existing interface.")
            .into());
    }
    let mut updated = current.clone();
    let name = interface.name.clone();
    let mut shared = None;
    if body.is_active == Some(true) {
        shared = address_shared(ctx, cluster, &current.name, &interface);
        updated.active_net_interface = name.clone();
        updated
            .props
            .insert("CurStltConnName".into(), name.to_string());
    }
    updated.net_interfaces.push(interface);
    let mut plan = Plan {
        no_wait: true,
        ..Plan::new()
    };
    plan.replies.extend(shared);
    plan.op(Op::PutNode(updated)).reply(
        ctx.created(format!(
            "New network interface '{name}' on node '{}' created.",
            current.name
        ))
        .obj_ref("Node", current.name.as_str()),
    );
    Ok(plan)
}

/// `PUT /v1/nodes/{node}/net-interfaces/{netif}`.
pub fn modify_net_interface(
    cluster: &Cluster,
    node: &str,
    interface: &str,
    body: &rest::NetInterface,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Modify, Object::NetInterface);
    let current = find(ctx, cluster, node)?;
    let name: NetInterfaceName = parse_name(ctx, code::FAIL_INVLD_NET_NAME, interface)?;
    let Some(index) = current.net_interfaces.iter().position(|i| i.name == name) else {
        return Err(not_found(
            ctx,
            code::FAIL_NOT_FOUND_NET_IF,
            "Network interface",
            interface,
            format!(
                "List the interfaces with 'ferrite node interface list {}'.",
                current.name
            ),
        ));
    };
    let mut replacement = net_interface(
        ctx,
        current.node_type,
        &rest::NetInterface {
            name: interface.to_string(),
            ..body.clone()
        },
    )?;
    replacement.uuid = current.net_interfaces[index].uuid.clone();
    // A modification that gives no port keeps the interface's, as in LINSTOR.
    if body.satellite_port.is_none() {
        replacement.satellite_port = current.net_interfaces[index].satellite_port;
    }
    replacement.name = current.net_interfaces[index].name.clone();
    let mut updated = current.clone();
    let becomes_active = body.is_active == Some(true) || updated.active_net_interface == name;
    let mut shared = None;
    if becomes_active {
        shared = address_shared(ctx, cluster, &current.name, &replacement);
        updated.active_net_interface = replacement.name.clone();
        updated
            .props
            .insert("CurStltConnName".into(), replacement.name.to_string());
    }
    updated.net_interfaces[index] = replacement;
    let mut plan = Plan {
        no_wait: true,
        ..Plan::new()
    };
    plan.replies.extend(shared);
    plan.op(Op::PutNode(updated)).reply(
        ctx.modified(format!(
            "Network interface '{name}' on node '{}' modified.",
            current.name
        ))
        .obj_ref("Node", current.name.as_str()),
    );
    Ok(plan)
}

/// `DELETE /v1/nodes/{node}/net-interfaces/{netif}`: not the active one.
pub fn delete_net_interface(
    cluster: &Cluster,
    node: &str,
    interface: &str,
) -> Result<Plan, Failure> {
    let ctx = &Context::new(Operation::Delete, Object::NetInterface);
    let current = find(ctx, cluster, node)?;
    let name: NetInterfaceName = parse_name(ctx, code::FAIL_INVLD_NET_NAME, interface)?;
    if current.net_interface(&name).is_none() {
        return Ok(super::nothing_to_delete(
            ctx,
            format!(
                "Deletion of network interface '{interface}' on node '{}' had no effect.",
                current.name
            ),
            format!(
                "Network interface '{interface}' on node '{}' does not exist.",
                current.name
            ),
        ));
    }
    if current.active_net_interface == name {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Network interface '{name}' is the active satellite connection of node '{}'.",
                    current.name
                ),
            )
            .correction("Make another interface active first.")
            .into());
    }
    let mut updated = current.clone();
    updated.net_interfaces.retain(|i| i.name != name);
    let mut plan = Plan {
        no_wait: true,
        ..Plan::new()
    };
    plan.op(Op::PutNode(updated)).reply(
        ctx.deleted(format!(
            "Network interface '{name}' on node '{}' deleted.",
            current.name
        ))
        .obj_ref("Node", current.name.as_str()),
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{apply, node_body};
    use ferrite_types::ResourceName;

    #[test]
    fn create_registers_node_with_diskless_pool() {
        let mut cluster = Cluster::default();
        let plan = create(&cluster, &node_body("node1", "127.0.0.11")).unwrap();
        assert_eq!(plan.replies[0].message, "New node 'node1' registered.");
        assert_eq!(plan.replies[0].ret_code, 20_709_377);
        apply(&mut cluster, plan);
        let node = cluster.node(&"NODE1".parse().unwrap()).unwrap();
        assert_eq!(
            node.satellite_address().unwrap().to_string(),
            "127.0.0.11:3366"
        );
        assert!(
            node.storage_pools
                .contains_key(&model::default_diskless_pool())
        );
    }

    #[test]
    fn duplicates_and_bad_input_are_refused() {
        let mut cluster = Cluster::default();
        let plan = create(&cluster, &node_body("node1", "127.0.0.11")).unwrap();
        apply(&mut cluster, plan);
        let again = create(&cluster, &node_body("Node1", "127.0.0.12")).unwrap_err();
        assert_eq!(again.0[0].ret_code().code(), code::FAIL_EXISTS_NODE);
        let same_address = create(&cluster, &node_body("node2", "127.0.0.11")).unwrap();
        assert!(same_address.replies[0].ret_code().is_warning());
        assert!(same_address.replies[0].message.contains("node1"));
        let bad_ip = create(&cluster, &node_body("node3", "300.1.1.1")).unwrap_err();
        assert_eq!(bad_ip.0[0].ret_code().code(), code::FAIL_INVLD_NET_ADDR);
        let bad_name = create(&cluster, &node_body("no de", "127.0.0.13")).unwrap_err();
        assert_eq!(bad_name.0[0].ret_code().code(), code::FAIL_INVLD_NODE_NAME);
        assert!(bad_name.0[0].correction.is_some());
    }

    #[test]
    fn delete_marks_a_node_with_resources_and_it_goes_with_the_last_one() {
        use crate::app::deletions::{Marked, finish};
        use crate::reported::NodeRuntime;
        use ferrite_proto::{DeletedResource, NodeReport};

        let mut cluster = crate::app::testing::tutorial_cluster();
        crate::app::testing::add_resource(&mut cluster, "res1", "node1", "pool_ssd");
        let node1: NodeName = "node1".parse().unwrap();
        let plan = delete(&cluster, &Runtime::new(), "node1").unwrap();
        assert!(plan.replies[0].message.contains("marked for deletion"));
        assert!(plan.deletions.contains(&Marked::Node {
            node: node1.clone()
        }));
        apply(&mut cluster, plan);
        let node = cluster.node(&node1).unwrap();
        assert_eq!(node.flags, ["DELETE"]);
        let rd = &cluster.resource_definitions[&"res1".parse::<ResourceName>().unwrap()];
        let resource = &rd.resources[&node1];
        assert!(resource.is_deleting());
        assert!(resource.flags().contains(&"DELETE".to_string()));
        // Deleting again changes nothing and still answers.
        assert!(delete(&cluster, &Runtime::new(), "node1").is_ok());
        // Nothing new is placed on it: it would hold the node back.
        let mut with_res2 = cluster.clone();
        crate::app::testing::add_resource(&mut with_res2, "res2", "node2", "pool_ssd");
        let runtime = crate::app::testing::all_up_to_date(&with_res2);
        let refused = crate::app::resources::create(
            &with_res2,
            &runtime,
            "res2",
            &[rest::ResourceCreate {
                resource: rest::Resource {
                    node_name: "node1".into(),
                    ..Default::default()
                },
                ..Default::default()
            }],
        )
        .unwrap_err();
        assert_eq!(refused.0[0].ret_code().code(), code::FAIL_IN_USE);
        assert!(
            refused.0[0].message.contains("being deleted"),
            "{refused:?}"
        );

        // Nothing confirmed: the node stays.
        assert!(finish(&cluster, &Runtime::new()).ops.is_empty());
        let mut runtime = Runtime::new();
        let mut reported = NodeRuntime {
            status: ConnectionStatus::Online,
            ..Default::default()
        };
        reported.absorb(NodeReport {
            deleted_resources: vec![DeletedResource {
                resource: "res1".into(),
                uuid: resource.uuid.clone(),
            }],
            ..Default::default()
        });
        runtime.insert(node1.clone(), reported);
        let plan = finish(&cluster, &runtime);
        assert!(matches!(plan.ops.last(), Some(Op::DeleteNode(n)) if n == &node1));
        apply(&mut cluster, plan);
        assert!(cluster.node(&node1).is_none());
        assert!(Marked::Node { node: node1 }.is_done(&cluster));

        // A node without resources goes at once; one with snapshots is refused.
        let plan = delete(&cluster, &Runtime::new(), "node2").unwrap();
        assert!(matches!(&plan.ops[..], [Op::DeleteNode(_)]));
    }

    #[test]
    fn delete_refuses_a_node_whose_resource_is_in_use() {
        let mut cluster = crate::app::testing::tutorial_cluster();
        crate::app::testing::add_resource(&mut cluster, "res1", "node1", "pool_ssd");
        let mut runtime = crate::app::testing::all_up_to_date(&cluster);
        let node1: NodeName = "node1".parse().unwrap();
        let rd = cluster.resource_definitions[&"res1".parse::<ResourceName>().unwrap()].clone();
        let mut report = crate::app::testing::engine_report(&rd, &rd.resources[&node1]);
        report.in_use = true;
        runtime
            .get_mut(&node1)
            .unwrap()
            .absorb(ferrite_proto::NodeReport {
                replication: vec![report],
                ..Default::default()
            });
        let before = cluster.revision;
        let err = delete(&cluster, &runtime, "node1").unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_IN_USE);
        assert_eq!(cluster.revision, before);
        let plan = lost(&cluster, &Runtime::new(), "node1").unwrap();
        apply(&mut cluster, plan);
        assert!(cluster.node(&node1).is_none());
    }
}
