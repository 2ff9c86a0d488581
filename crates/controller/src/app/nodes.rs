//! Nodes and their network interfaces: create, modify, delete, lost.

use std::net::IpAddr;

use ferrite_types::api_call_rc::code;
use ferrite_types::rest;
use ferrite_types::{ConnectionStatus, EncryptionType, NetInterfaceName, NodeName};

use super::placement::Runtime;
use super::{
    Context, Failure, Object, Operation, Plan, deletions, not_found, parse_name, properties,
};
use crate::model::{self, Cluster, NetInterface, Node, Op, StoragePool};

/// The satellite port when a request gives none.
pub const DEFAULT_SATELLITE_PORT: u16 = 3366;

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

fn net_interface(ctx: &Context, body: &rest::NetInterface) -> Result<NetInterface, Failure> {
    let name: NetInterfaceName = parse_name(ctx, code::FAIL_INVLD_NET_NAME, &body.name)?;
    let address: IpAddr = body.address.parse().map_err(|_| {
        ctx.error(
            code::FAIL_INVLD_NET_ADDR,
            format!("Invalid network address '{}'.", body.address),
        )
        .cause("The address is not an IPv4 or IPv6 address.")
        .correction("Give the node's IP address, e.g. 10.0.0.1.")
    })?;
    let port = match body.satellite_port {
        None => DEFAULT_SATELLITE_PORT,
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
    let encryption = body
        .satellite_encryption_type
        .unwrap_or(EncryptionType::Plain);
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

/// Refuses a satellite address another node already uses: two nodes cannot share a satellite.
fn check_address_free(
    ctx: &Context,
    cluster: &Cluster,
    this: &NodeName,
    interface: &NetInterface,
) -> Result<(), Failure> {
    let wanted = std::net::SocketAddr::new(interface.address, interface.satellite_port);
    for other in cluster.nodes.values().filter(|n| &n.name != this) {
        if other.satellite_address() == Some(wanted) {
            return Err(ctx
                .error(
                    code::FAIL_EXISTS_NET_IF,
                    format!(
                        "Node '{}' already uses the satellite address {wanted}.",
                        other.name
                    ),
                )
                .cause("One satellite serves one node.")
                .correction("Give this node its own address or port.")
                .into());
        }
    }
    Ok(())
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
        let interface = net_interface(ctx, body_interface)?;
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
    if body.node_type.has_satellite() {
        check_address_free(ctx, cluster, &name, &interfaces[active_index])?;
    }
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
    plan.replies.extend(edited.warnings);
    plan.op(Op::PutNode(updated)).reply(
        ctx.modified(format!("Node '{}' modified.", current.name))
            .obj_ref("Node", current.name.as_str()),
    );
    Ok(plan)
}

/// `DELETE /v1/nodes/{node}`: only a node without resources.
pub fn delete(cluster: &Cluster, node: &str) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    let current = find(ctx, cluster, node)?;
    let resources: Vec<String> = cluster
        .resources_on_node(&current.name)
        .map(|(rd, r)| {
            if r.is_deleting() {
                format!("{} (being deleted)", rd.name)
            } else {
                rd.name.to_string()
            }
        })
        .collect();
    if !resources.is_empty() {
        return Err(ctx
            .error(
                code::FAIL_IN_USE,
                format!(
                    "Node '{}' still has {} resource(s).",
                    current.name,
                    resources.len()
                ),
            )
            .cause(format!("Resources on the node: {}.", resources.join(", ")))
            .correction(
                "Delete those resources first ('ferrite resource delete'), or, if the node is gone \
                 for good, use 'ferrite node lost'.",
            )
            .into());
    }
    let mut plan = Plan::new();
    plan.op(Op::DeleteNode(current.name.clone())).reply(
        ctx.deleted(format!("Node '{}' deleted.", current.name))
            .obj_ref("Node", current.name.as_str()),
    );
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
    let interface = net_interface(ctx, body)?;
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
    if body.is_active == Some(true) {
        check_address_free(ctx, cluster, &current.name, &interface)?;
        updated.active_net_interface = name.clone();
        updated
            .props
            .insert("CurStltConnName".into(), name.to_string());
    }
    updated.net_interfaces.push(interface);
    let mut plan = Plan::new();
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
        &rest::NetInterface {
            name: interface.to_string(),
            ..body.clone()
        },
    )?;
    replacement.uuid = current.net_interfaces[index].uuid.clone();
    replacement.name = current.net_interfaces[index].name.clone();
    let mut updated = current.clone();
    let becomes_active = body.is_active == Some(true) || updated.active_net_interface == name;
    if becomes_active {
        check_address_free(ctx, cluster, &current.name, &replacement)?;
        updated.active_net_interface = replacement.name.clone();
        updated
            .props
            .insert("CurStltConnName".into(), replacement.name.to_string());
    }
    updated.net_interfaces[index] = replacement;
    let mut plan = Plan::new();
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
    let mut plan = Plan::new();
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
        let same_address = create(&cluster, &node_body("node2", "127.0.0.11")).unwrap_err();
        assert_eq!(
            same_address.0[0].ret_code().code(),
            code::FAIL_EXISTS_NET_IF
        );
        let bad_ip = create(&cluster, &node_body("node3", "300.1.1.1")).unwrap_err();
        assert_eq!(bad_ip.0[0].ret_code().code(), code::FAIL_INVLD_NET_ADDR);
        let bad_name = create(&cluster, &node_body("no de", "127.0.0.13")).unwrap_err();
        assert_eq!(bad_name.0[0].ret_code().code(), code::FAIL_INVLD_NODE_NAME);
        assert!(bad_name.0[0].correction.is_some());
    }

    #[test]
    fn delete_refuses_nodes_with_resources_and_lost_forgets_them() {
        let mut cluster = crate::app::testing::tutorial_cluster();
        crate::app::testing::add_resource(&mut cluster, "res1", "node1", "pool_ssd");
        let err = delete(&cluster, "node1").unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_IN_USE);
        assert!(err.0[0].cause.as_ref().unwrap().contains("res1"));
        let plan = lost(&cluster, &Runtime::new(), "node1").unwrap();
        apply(&mut cluster, plan);
        assert!(cluster.node(&"node1".parse().unwrap()).is_none());
        assert!(
            cluster
                .resource_definitions
                .values()
                .all(|rd| rd.resources.is_empty())
        );
    }
}
