//! Node connections and resource connections: the properties of the link between two nodes,
//! or between a definition's resources on two nodes (LINSTOR keeps e.g. DRBD path options
//! there). A connection is one object whichever way round a client names its nodes; it exists
//! while it has properties, and a resource connection goes with either of its resources.

use ferrite_types::api_call_rc::code;
use ferrite_types::rest::{self, PropsModify};
use ferrite_types::{NodeName, ResourceName};

use super::{Context, Failure, Object, Operation, Plan, nodes, not_found, properties};
use crate::model::{Cluster, Connection, Op};

const NODE_MODIFY: Context = Context::new(Operation::Modify, Object::NodeConnection);
const RESOURCE_MODIFY: Context = Context::new(Operation::Modify, Object::ResourceConnection);

fn distinct(ctx: &Context, a: &NodeName, b: &NodeName) -> Result<(), Failure> {
    if a == b {
        return Err(ctx
            .error(
                code::FAIL_INVLD_NODE_NAME,
                format!("A connection needs two nodes; '{a}' is given twice."),
            )
            .cause("A connection links two different nodes.")
            .correction("Name two different nodes.")
            .into());
    }
    Ok(())
}

fn node_view(connection: &Connection) -> rest::NodeConnection {
    rest::NodeConnection {
        node_a: connection.node_a.to_string(),
        node_b: connection.node_b.to_string(),
        props: connection.props.clone(),
    }
}

fn resource_view(connection: &Connection) -> rest::ResourceConnection {
    rest::ResourceConnection {
        node_a: connection.node_a.to_string(),
        node_b: connection.node_b.to_string(),
        props: connection.props.clone(),
        flags: Vec::new(),
    }
}

/// `GET /v1/node-connections`: every connection, or those of `node_a` (and `node_b`).
pub fn list_node_connections(
    cluster: &Cluster,
    node_a: Option<&str>,
    node_b: Option<&str>,
) -> Result<Vec<rest::NodeConnection>, Failure> {
    let ctx = &NODE_MODIFY;
    let a = node_a
        .map(|n| nodes::find(ctx, cluster, n).map(|n| n.name.clone()))
        .transpose()?;
    let b = node_b
        .map(|n| nodes::find(ctx, cluster, n).map(|n| n.name.clone()))
        .transpose()?;
    let involves = |c: &Connection, n: &Option<NodeName>| {
        n.as_ref().is_none_or(|n| &c.node_a == n || &c.node_b == n)
    };
    Ok(cluster
        .node_connections
        .values()
        .filter(|c| involves(c, &a) && involves(c, &b))
        .map(node_view)
        .collect())
}

/// `PUT /v1/node-connections/{node_a}/{node_b}`.
pub fn modify_node_connection(
    cluster: &Cluster,
    node_a: &str,
    node_b: &str,
    body: &PropsModify,
) -> Result<Plan, Failure> {
    let ctx = &NODE_MODIFY;
    let a = nodes::find(ctx, cluster, node_a)?.name.clone();
    let b = nodes::find(ctx, cluster, node_b)?.name.clone();
    distinct(ctx, &a, &b)?;
    let (node_a, node_b) = Connection::key(&a, &b);
    let current = cluster
        .node_connections
        .get(&(node_a.clone(), node_b.clone()))
        .cloned()
        .unwrap_or(Connection {
            node_a: node_a.clone(),
            node_b: node_b.clone(),
            props: Default::default(),
        });
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    if edited.props.is_empty() {
        plan.op(Op::DeleteNodeConnection {
            node_a: node_a.clone(),
            node_b: node_b.clone(),
        });
    } else {
        plan.op(Op::PutNodeConnection(Connection {
            props: edited.props,
            ..current
        }));
    }
    plan.reply(
        ctx.modified(format!(
            "Node connection between '{node_a}' and '{node_b}' modified."
        ))
        .obj_ref("Node", node_a.as_str())
        .obj_ref("NodeB", node_b.as_str()),
    );
    Ok(plan)
}

fn resource_nodes(
    ctx: &Context,
    cluster: &Cluster,
    resource: &str,
    node_a: &str,
    node_b: &str,
) -> Result<(ResourceName, NodeName, NodeName), Failure> {
    let rd = super::resource_definitions::find(ctx, cluster, resource)?;
    let mut names = Vec::new();
    for node in [node_a, node_b] {
        let name = nodes::find(ctx, cluster, node)?.name.clone();
        if !rd.resources.contains_key(&name) {
            return Err(not_found(
                ctx,
                code::FAIL_NOT_FOUND_RSC,
                "Resource",
                format!("{}' on node '{name}", rd.name),
                format!(
                    "List the resources with 'ferrite resource list -r {}'.",
                    rd.name
                ),
            ));
        }
        names.push(name);
    }
    distinct(ctx, &names[0], &names[1])?;
    let (a, b) = Connection::key(&names[0], &names[1]);
    Ok((rd.name.clone(), a, b))
}

/// `GET /v1/resource-definitions/{rd}/resource-connections`.
pub fn list_resource_connections(
    cluster: &Cluster,
    resource: &str,
) -> Result<Vec<rest::ResourceConnection>, Failure> {
    let rd = super::resource_definitions::find(&RESOURCE_MODIFY, cluster, resource)?;
    Ok(cluster
        .resource_connections
        .iter()
        .filter(|((name, _, _), _)| name == &rd.name)
        .map(|(_, c)| resource_view(c))
        .collect())
}

/// `GET /v1/resource-definitions/{rd}/resource-connections/{node_a}/{node_b}`: the connection
/// between two resources, with no properties if none were set.
pub fn show_resource_connection(
    cluster: &Cluster,
    resource: &str,
    node_a: &str,
    node_b: &str,
) -> Result<Vec<rest::ResourceConnection>, Failure> {
    let (rd, a, b) = resource_nodes(&RESOURCE_MODIFY, cluster, resource, node_a, node_b)?;
    let connection = cluster
        .resource_connections
        .get(&(rd, a.clone(), b.clone()))
        .cloned()
        .unwrap_or(Connection {
            node_a: a,
            node_b: b,
            props: Default::default(),
        });
    Ok(vec![resource_view(&connection)])
}

/// `PUT /v1/resource-definitions/{rd}/resource-connections/{node_a}/{node_b}`.
pub fn modify_resource_connection(
    cluster: &Cluster,
    resource: &str,
    node_a: &str,
    node_b: &str,
    body: &PropsModify,
) -> Result<Plan, Failure> {
    let ctx = &RESOURCE_MODIFY;
    let (rd, a, b) = resource_nodes(ctx, cluster, resource, node_a, node_b)?;
    let key = (rd.clone(), a.clone(), b.clone());
    let current = cluster
        .resource_connections
        .get(&key)
        .cloned()
        .unwrap_or(Connection {
            node_a: a.clone(),
            node_b: b.clone(),
            props: Default::default(),
        });
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    if edited.props.is_empty() {
        plan.op(Op::DeleteResourceConnection {
            resource: rd.clone(),
            node_a: a.clone(),
            node_b: b.clone(),
        });
    } else {
        plan.op(Op::PutResourceConnection {
            resource: rd.clone(),
            connection: Connection {
                props: edited.props,
                ..current
            },
        });
    }
    plan.reply(
        ctx.modified(format!(
            "Resource connection of '{rd}' between '{a}' and '{b}' modified."
        ))
        .obj_ref("RscDfn", rd.as_str())
        .obj_ref("Node", a.as_str())
        .obj_ref("NodeB", b.as_str()),
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, apply, tutorial_cluster};

    fn set(key: &str) -> PropsModify {
        let mut body = PropsModify::default();
        body.override_props.insert(key.into(), "1".into());
        body
    }

    #[test]
    fn node_connections_are_one_object_either_way_round() {
        let mut cluster = tutorial_cluster();
        let plan = modify_node_connection(&cluster, "node2", "node1", &set("Aux/a")).unwrap();
        apply(&mut cluster, plan);
        let plan = modify_node_connection(&cluster, "NODE1", "node2", &set("Aux/b")).unwrap();
        apply(&mut cluster, plan);
        let listed = list_node_connections(&cluster, Some("node2"), None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].node_a, "node1");
        assert_eq!(listed[0].props.len(), 2);
        assert!(modify_node_connection(&cluster, "node1", "node1", &set("Aux/a")).is_err());
        assert!(modify_node_connection(&cluster, "node1", "node9", &set("Aux/a")).is_err());
    }

    #[test]
    fn a_resource_connections_drbd_options_reach_its_two_members_for_that_peer_only() {
        use crate::app::testing::{commit, engines_runtime, replicated_group, spawn};
        use ferrite_types::{LayerKind, NodeName, ResourceName};
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd", "storage"]);
        let runtime = engines_runtime(&cluster, &[LayerKind::Drbd]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let name: ResourceName = "web".parse().unwrap();
        let nodes: Vec<NodeName> = cluster.resource_definitions[&name]
            .resources
            .keys()
            .cloned()
            .collect();
        assert_eq!(nodes.len(), 3, "two disks and a tiebreaker");
        let mut body = PropsModify::default();
        body.override_props
            .insert("DrbdOptions/Net/max-buffers".into(), "8000".into());
        let plan = modify_resource_connection(
            &cluster,
            "web",
            nodes[1].as_str(),
            nodes[0].as_str(),
            &body,
        )
        .unwrap();
        let mut touched = std::collections::BTreeSet::new();
        for op in &plan.ops {
            op.touches(&cluster, &mut touched);
        }
        assert_eq!(
            touched,
            [
                (nodes[0].clone(), Some(name.clone())),
                (nodes[1].clone(), Some(name.clone()))
            ]
            .into()
        );
        apply(&mut cluster, plan);
        let rd = &cluster.resource_definitions[&name];
        let spec = |node: &NodeName| {
            crate::satellites::desired::resource_spec(&cluster, rd, &rd.resources[node])
                .replication
                .unwrap()
        };
        let first = spec(&nodes[0]);
        assert_eq!(
            first.connection_options[nodes[1].as_str()],
            [("Net/max-buffers".to_string(), "8000".to_string())].into()
        );
        assert_eq!(first.connection_options.len(), 1);
        assert!(!first.options.contains_key("Net/max-buffers"));
        assert!(
            spec(&nodes[1])
                .connection_options
                .contains_key(nodes[0].as_str())
        );
        assert!(spec(&nodes[2]).connection_options.is_empty());

        // A node connection's options apply to the connection too, under the resource
        // connection's and the definition's.
        let mut node_connection = PropsModify::default();
        node_connection.override_props.extend([
            (
                "DrbdOptions/Net/max-buffers".to_string(),
                "4000".to_string(),
            ),
            (
                "DrbdOptions/Net/sndbuf-size".to_string(),
                "1048576".to_string(),
            ),
            (
                "DrbdOptions/Net/rcvbuf-size".to_string(),
                "2097152".to_string(),
            ),
        ]);
        let plan = modify_node_connection(
            &cluster,
            nodes[0].as_str(),
            nodes[2].as_str(),
            &node_connection,
        )
        .unwrap();
        apply(&mut cluster, plan);
        let plan = modify_node_connection(
            &cluster,
            nodes[0].as_str(),
            nodes[1].as_str(),
            &node_connection,
        )
        .unwrap();
        apply(&mut cluster, plan);
        cluster
            .resource_definitions
            .get_mut(&name)
            .unwrap()
            .props
            .insert("DrbdOptions/Net/rcvbuf-size".into(), "3145728".into());
        let rd = &cluster.resource_definitions[&name];
        let spec = |node: &NodeName| {
            crate::satellites::desired::resource_spec(&cluster, rd, &rd.resources[node])
                .replication
                .unwrap()
        };
        let first = spec(&nodes[0]);
        assert_eq!(
            first.connection_options[nodes[1].as_str()],
            [
                ("Net/max-buffers".to_string(), "8000".to_string()),
                ("Net/rcvbuf-size".to_string(), "3145728".to_string()),
                ("Net/sndbuf-size".to_string(), "1048576".to_string()),
            ]
            .into(),
            "the resource connection over the node connection; the definition over the node \
             connection, written in the connection as LINSTOR writes it"
        );
        assert_eq!(
            first.connection_options[nodes[2].as_str()],
            [
                ("Net/max-buffers".to_string(), "4000".to_string()),
                ("Net/rcvbuf-size".to_string(), "3145728".to_string()),
                ("Net/sndbuf-size".to_string(), "1048576".to_string()),
            ]
            .into()
        );
        assert_eq!(first.options["Net/rcvbuf-size"], "3145728");

        // A value DRBD would refuse is refused before anything is written.
        let mut bad = PropsModify::default();
        bad.override_props
            .insert("DrbdOptions/Net/max-buffers".into(), "lots".into());
        assert!(
            modify_resource_connection(&cluster, "web", nodes[0].as_str(), nodes[1].as_str(), &bad)
                .is_err()
        );
    }

    #[test]
    fn resource_connections_need_both_resources_and_go_with_either() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res1", "node1", "pool_ssd");
        add_resource(&mut cluster, "res1", "node2", "pool_ssd");
        assert!(
            modify_resource_connection(&cluster, "res1", "node1", "node3", &set("Aux/a")).is_err()
        );
        let plan =
            modify_resource_connection(&cluster, "res1", "node2", "node1", &set("Aux/a")).unwrap();
        apply(&mut cluster, plan);
        assert_eq!(
            list_resource_connections(&cluster, "res1").unwrap().len(),
            1
        );
        let mut gone = crate::app::Plan::new();
        gone.op(Op::DeleteResource {
            resource: "res1".parse().unwrap(),
            node: "node2".parse().unwrap(),
        });
        apply(&mut cluster, gone);
        assert!(
            list_resource_connections(&cluster, "res1")
                .unwrap()
                .is_empty()
        );
    }
}
