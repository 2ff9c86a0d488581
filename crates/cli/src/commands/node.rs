//! `node` (`n`): registering nodes, their network interfaces and properties, `node list` (with
//! the reason a node is not online, when the controller gives one), and the orphans a node
//! keeps (`node orphans list`, `node orphans delete`).

use std::net::{IpAddr, ToSocketAddrs};

use ferrite_client::{ListFilter, NewNode};
use ferrite_types::rest::{NetInterface, Node, NodeModify, Orphan, OrphanRef};
use ferrite_types::{ConnectionStatus, EncryptionType, NodeType};

use super::{
    AUX_NAMESPACE, Ctx, Failure, Outcome, emit, prop_cells, property_change, show_prop_columns,
    with_prop_columns,
};
use crate::args::TableOpts;
use crate::args::node::{InterfaceCommand, NodeCommand, NodeCreate, NodeList, OrphanCommand};
use crate::json;
use crate::output::{Color, Exit, Style};
use crate::table::{Cell, Column, Table};

/// LINSTOR's default ports of a node's first interface.
pub const SATELLITE_PORT_PLAIN: u16 = 3366;
pub const SATELLITE_PORT_SSL: u16 = 3367;
pub const CONTROLLER_PORT_PLAIN: u16 = 3370;
pub const CONTROLLER_PORT_SSL: u16 = 3371;

pub fn run(ctx: &Ctx, command: NodeCommand) -> Outcome {
    match command {
        NodeCommand::Create(create) => {
            let node = new_node(&create, resolve_address)?;
            ctx.one(ctx.client.create_node(&node))
        }
        NodeCommand::List(list) => {
            let filter = ListFilter {
                nodes: list.nodes.clone(),
                props: list.props.clone(),
                ..Default::default()
            };
            let nodes = ctx.client.nodes(&filter)?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&nodes.raw));
            }
            emit(&render_nodes(
                &nodes.items,
                &list,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        NodeCommand::Delete(delete) => ctx.one(ctx.client.delete_node(&delete.name)),
        NodeCommand::Lost(lost) => ctx.one(ctx.client.lose_node(&lost.name)),
        NodeCommand::Evacuate(args) => super::physical_storage::evacuate(ctx, &args),
        NodeCommand::Restore(args) => super::physical_storage::restore(ctx, &args),
        NodeCommand::Modify(modify) => ctx.one(ctx.client.modify_node(
            &modify.node_name,
            &NodeModify {
                node_type: Some(modify.node_type),
                ..Default::default()
            },
        )),
        NodeCommand::Reconnect(reconnect) => {
            ctx.run_all(reconnect.nodes, |client, node| client.reconnect_node(&node))
        }
        NodeCommand::SetProperty(set) => {
            let change = property_change(&set.property);
            ctx.one(ctx.client.modify_node(
                &set.node_name,
                &NodeModify {
                    override_props: change.override_props,
                    delete_props: change.delete_props,
                    ..Default::default()
                },
            ))
        }
        NodeCommand::ListProperties(list) => {
            let node = find_node(ctx, &list.node_name)?;
            Ok(ctx.properties(Some(&node.props), list.table.pastable))
        }
        NodeCommand::Interface(command) => interface(ctx, command),
        NodeCommand::Orphans(command) => orphans(ctx, command),
    }
}

fn orphans(ctx: &Ctx, command: OrphanCommand) -> Outcome {
    match command {
        OrphanCommand::List(list) => {
            // One call per named node, so that a node that does not exist is an error rather
            // than an empty list.
            let listings = if list.nodes.is_empty() {
                vec![ctx.client.orphans()?]
            } else {
                list.nodes
                    .iter()
                    .map(|node| ctx.client.node_orphans(node))
                    .collect::<Result<Vec<_>, _>>()?
            };
            if ctx.machine_readable {
                let raw = json::concat_arrays(listings.iter().map(|l| l.raw.as_str()));
                return Ok(ctx.listing_json(&raw));
            }
            let orphans: Vec<Orphan> = listings.into_iter().flat_map(|l| l.items).collect();
            emit(&render_orphans(
                &orphans,
                &list.table,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        OrphanCommand::Delete(delete) => ctx.one(ctx.client.delete_orphan(
            &delete.node_name,
            &OrphanRef {
                resource_name: delete.resource_name.clone(),
                volume_number: delete.volume_nr,
                identity: delete.identity.clone(),
                pool_name: delete.pool_name.clone(),
            },
        )),
    }
}

/// Where an orphan is and its name there: `LOCATION/NAME` (a directory and file name, a volume
/// group and logical volume, a dataset and volume).
pub fn backing_volume(orphan: &Orphan) -> String {
    format!(
        "{}/{}",
        orphan.pool_name.trim_end_matches('/'),
        orphan.backing_name
    )
}

/// `node orphans list`: one row per orphan.
pub fn render_orphans(orphans: &[Orphan], table_opts: &TableOpts, style: &Style) -> String {
    let mut table = Table::new(vec![
        Column::new("Node"),
        Column::new("Resource"),
        Column::new("VlmNr").right(),
        Column::new("Pool"),
        Column::new("BackingVolume"),
        Column::new("Identity"),
        Column::new("Reason"),
    ]);
    table.group_by(&table_opts.groupby);
    for orphan in orphans {
        table.row(vec![
            orphan.node_name.clone().into(),
            orphan.resource_name.clone().into(),
            orphan.volume_number.to_string().into(),
            orphan.storage_pool_name.clone().into(),
            backing_volume(orphan).into(),
            orphan.identity.clone().unwrap_or_default().into(),
            orphan.reason.clone().into(),
        ]);
    }
    table.render(style)
}

/// The one node of that name, as `GET /v1/nodes?nodes=NAME` returns it.
fn find_node(ctx: &Ctx, name: &str) -> Result<Node, Failure> {
    let nodes = ctx.client.nodes(&ListFilter {
        nodes: vec![name.to_string()],
        ..Default::default()
    })?;
    nodes
        .items
        .into_iter()
        .find(|n| n.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| Failure::not_found(format!("Node '{name}' not found on controller.")))
}

/// The default port of a node's first interface, as `linstor` picks it.
pub fn default_port(node_type: NodeType, encryption: EncryptionType) -> u16 {
    match (encryption, node_type) {
        (EncryptionType::Plain, NodeType::Controller) => CONTROLLER_PORT_PLAIN,
        (EncryptionType::Plain, _) => SATELLITE_PORT_PLAIN,
        (EncryptionType::Ssl, NodeType::Satellite) => SATELLITE_PORT_SSL,
        (EncryptionType::Ssl, _) => CONTROLLER_PORT_SSL,
    }
}

/// The first IPv4 address of `name` outside 127.0.0.0/8, as `linstor` resolves it.
pub fn resolve_address(name: &str) -> Result<String, Failure> {
    let addresses = (name, 0u16).to_socket_addrs().map_err(|error| {
        Failure::usage(format!(
            "Unable to resolve ip address for '{name}': {error}. Give the address: ferrite node create {name} IP"
        ))
    })?;
    addresses
        .map(|a| a.ip())
        .find(|ip| matches!(ip, IpAddr::V4(v4) if !v4.is_loopback()))
        .map(|ip| ip.to_string())
        .ok_or_else(|| {
            Failure::usage(format!(
                "Unable to determine a valid ip address for '{name}' (it resolves only to \
                 loopback or IPv6 addresses). Give the address: ferrite node create {name} IP"
            ))
        })
}

/// The node `node create` registers.
pub fn new_node(
    create: &NodeCreate,
    resolve: impl Fn(&str) -> Result<String, Failure>,
) -> Result<NewNode, Failure> {
    let address = match &create.ip {
        Some(ip) => ip.clone(),
        None => resolve(&create.name)?,
    };
    let port = create
        .port
        .unwrap_or_else(|| default_port(create.node_type, create.communication_type));
    Ok(NewNode {
        name: create.name.clone(),
        node_type: create.node_type,
        net_interface: NetInterface {
            name: create.interface_name.clone(),
            address,
            satellite_port: Some(i32::from(port)),
            satellite_encryption_type: Some(create.communication_type),
            is_active: Some(true),
            uuid: None,
        },
        props: Default::default(),
    })
}

/// `node list`'s State column: text and color.
pub fn node_state(node: &Node) -> (String, Color) {
    let has = |flag: &str| node.flags.iter().any(|f| f == flag);
    if has("EVICTED") {
        return ("EVICTED".into(), Color::Red);
    }
    if has("DELETE") {
        return ("DELETE".into(), Color::Red);
    }
    if has("EVACUATE") {
        return ("EVACUATE".into(), Color::Yellow);
    }
    let (text, color) = match node.connection_status.unwrap_or(ConnectionStatus::Offline) {
        ConnectionStatus::Offline => ("OFFLINE", Color::Red),
        ConnectionStatus::Connected => ("Connected", Color::Yellow),
        ConnectionStatus::Online => ("Online", Color::Green),
        ConnectionStatus::VersionMismatch => ("OFFLINE(VERSION MISMATCH)", Color::Red),
        ConnectionStatus::FullSyncFailed => ("OFFLINE(FULL SYNC FAILED)", Color::Red),
        ConnectionStatus::MissingExtTools => ("OFFLINE(MISSING EXTERNAL TOOLS)", Color::Red),
        ConnectionStatus::AuthenticationError => ("OFFLINE(AUTHENTICATION ERROR)", Color::Red),
        ConnectionStatus::Unknown => ("Unknown", Color::Yellow),
        ConnectionStatus::HostnameMismatch => ("OFFLINE(HOSTNAME MISMATCH)", Color::Red),
        ConnectionStatus::OtherController => ("OFFLINE(OTHER_CONTROLLER)", Color::Red),
        ConnectionStatus::NoStltConn => ("OFFLINE(NO CONNECTION TO SATELLITE)", Color::Red),
    };
    (text.to_string(), color)
}

/// `address:port (ENCRYPTION)` of the interface the controller uses.
pub fn active_address(node: &Node) -> String {
    node.net_interfaces
        .iter()
        .filter(|i| i.is_active == Some(true))
        .filter_map(|i| {
            let port = i.satellite_port.filter(|p| *p != 0)?;
            let encryption = i
                .satellite_encryption_type
                .map(|e| e.as_str())
                .unwrap_or("");
            Some(format!("{}:{port} ({encryption})", i.address))
        })
        .next_back()
        .unwrap_or_default()
}

pub fn render_nodes(nodes: &[Node], list: &NodeList, style: &Style) -> String {
    let props = show_prop_columns(&list.show_props);
    let mut columns = vec![
        Column::new("Node"),
        Column::new("NodeType"),
        Column::new("Addresses"),
    ];
    if list.show_aux_props {
        columns.push(Column::new("AuxProps"));
    }
    columns.push(Column::new("State").colored(Color::DarkGreen));
    let mut table = Table::new(with_prop_columns(columns, &props));
    table.group_by(&list.table.groupby);
    for node in nodes {
        let mut row: Vec<Cell> = vec![
            node.name.clone().into(),
            node.node_type.as_str().into(),
            active_address(node).into(),
        ];
        if list.show_aux_props {
            let aux: Vec<String> = node
                .props
                .iter()
                .filter(|(k, _)| k.starts_with(AUX_NAMESPACE))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            row.push(aux.join("\n").into());
        }
        let (state, color) = node_state(node);
        row.push(Cell::colored(state, Some(color)));
        row.extend(prop_cells(&node.props, &props));
        table.row(row);
    }
    let mut out = table.render(style);
    out.push_str(&connection_reasons(nodes, style));
    out
}

/// For each node the controller says why it is not online, its name, state and the reason,
/// below the table (the reasons are sentences, too long for a column):
///
/// ```text
/// node2: OFFLINE(FULL SYNC FAILED)
///     the offered state (...) is older than the one this node applied (...); ...
/// ```
///
/// Nothing when the controller gives no reason (LINSTOR's controllers never do).
pub fn connection_reasons(nodes: &[Node], style: &Style) -> String {
    let mut out = String::new();
    let mut explained: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            n.connection_status_reason
                .as_deref()
                .is_some_and(|r| !r.trim().is_empty())
        })
        .collect();
    explained.sort_by(|a, b| crate::table::natural_cmp(&a.name, &b.name));
    for node in explained {
        let (state, color) = node_state(node);
        out.push_str(&format!(
            "{}: {}\n",
            node.name,
            style.paint(&state, Some(color))
        ));
        let reason = node.connection_status_reason.as_deref().unwrap_or_default();
        for line in reason.trim_end().lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn interface(ctx: &Ctx, command: InterfaceCommand) -> Outcome {
    match command {
        InterfaceCommand::Create(create) => {
            let interface = NetInterface {
                name: create.interface_name.clone(),
                address: create.ip.clone(),
                satellite_port: create.port.map(i32::from),
                satellite_encryption_type: create.port.map(|_| create.communication_type),
                is_active: Some(create.active),
                uuid: None,
            };
            ctx.one(
                ctx.client
                    .create_net_interface(&create.node_name, &interface),
            )
        }
        InterfaceCommand::List(list) => {
            let node = find_node(ctx, &list.node_name)?;
            if ctx.machine_readable {
                let nodes = ctx.client.nodes(&ListFilter {
                    nodes: vec![list.node_name.clone()],
                    ..Default::default()
                })?;
                return Ok(ctx.listing_json(&nodes.raw));
            }
            emit(&render_interfaces(
                &node,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        InterfaceCommand::Modify(modify) => {
            // The controller replaces the whole interface, so what is not changed is taken
            // from the interface as it is.
            let current = ctx
                .client
                .net_interface(&modify.node_name, &modify.interface_name)?
                .items;
            let port = modify.port.map(i32::from).or(current.satellite_port);
            let encryption = modify
                .communication_type
                .or(current.satellite_encryption_type)
                .or(port.map(|_| EncryptionType::Plain));
            let interface = NetInterface {
                name: modify.interface_name.clone(),
                address: modify.ip.clone().unwrap_or(current.address),
                satellite_port: port,
                satellite_encryption_type: encryption,
                is_active: modify.active.then_some(true),
                uuid: None,
            };
            ctx.one(
                ctx.client
                    .modify_net_interface(&modify.node_name, &interface),
            )
        }
        InterfaceCommand::Delete(delete) => {
            let node = delete.node_name.clone();
            ctx.run_all(delete.interface_name, |client, interface| {
                client.delete_net_interface(&node, &interface)
            })
        }
    }
}

pub fn render_interfaces(node: &Node, style: &Style) -> String {
    let mut table = Table::new(vec![
        Column::new(node.name.clone()).colored(Color::Green),
        Column::new("NetInterface"),
        Column::new("IP"),
        Column::new("Port"),
        Column::new("EncryptionType"),
    ])
    .unsorted();
    for interface in &node.net_interfaces {
        table.row(vec![
            if interface.is_active == Some(true) {
                "+ StltCon"
            } else {
                "+"
            }
            .into(),
            interface.name.clone().into(),
            interface.address.clone().into(),
            interface
                .satellite_port
                .map(|p| p.to_string())
                .unwrap_or_default()
                .into(),
            interface
                .satellite_encryption_type
                .map(|e| e.as_str())
                .unwrap_or("")
                .into(),
        ]);
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::TableOpts;

    const PLAIN: Style = Style {
        utf8: false,
        color: false,
    };

    fn node(name: &str, address: &str, status: ConnectionStatus) -> Node {
        serde_json::from_value(serde_json::json!({
            "name": name, "type": "COMBINED", "props": {"Aux/rack": "r1", "NodeUname": name},
            "net_interfaces": [{"name": "default", "address": address, "satellite_port": 3366,
                "satellite_encryption_type": "PLAIN", "is_active": true}],
            "connection_status": status.as_str(),
        }))
        .unwrap()
    }

    fn list_args() -> NodeList {
        NodeList {
            table: TableOpts::default(),
            nodes: vec![],
            show_aux_props: false,
            props: vec![],
            show_props: vec![],
        }
    }

    #[test]
    fn node_list_as_in_the_tutorial() {
        let nodes = vec![
            node("alpha", "10.43.70.2", ConnectionStatus::Online),
            node("bravo", "10.43.70.3", ConnectionStatus::Online),
            node("charlie", "10.43.70.4", ConnectionStatus::Online),
            node("delta", "10.43.70.5", ConnectionStatus::Online),
        ];
        assert_eq!(
            render_nodes(&nodes, &list_args(), &PLAIN),
            "\
+-------------------------------------------------------+
| Node    | NodeType | Addresses               | State  |
|=======================================================|
| alpha   | COMBINED | 10.43.70.2:3366 (PLAIN) | Online |
| bravo   | COMBINED | 10.43.70.3:3366 (PLAIN) | Online |
| charlie | COMBINED | 10.43.70.4:3366 (PLAIN) | Online |
| delta   | COMBINED | 10.43.70.5:3366 (PLAIN) | Online |
+-------------------------------------------------------+
"
        );
    }

    #[test]
    fn aux_props_and_prop_columns() {
        let mut args = list_args();
        args.show_aux_props = true;
        args.show_props = vec!["Aux/rack=Rack".into()];
        let text = render_nodes(
            &[node("alpha", "10.0.0.1", ConnectionStatus::Offline)],
            &args,
            &PLAIN,
        );
        assert!(
            text.contains(
                "| Node  | NodeType | Addresses             | AuxProps    | State   | Rack |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| alpha | COMBINED | 10.0.0.1:3366 (PLAIN) | Aux/rack=r1 | OFFLINE | r1   |"
            ),
            "{text}"
        );
    }

    #[test]
    fn states_as_linstor_names_them() {
        let mut n = node("a", "1.1.1.1", ConnectionStatus::Offline);
        assert_eq!(node_state(&n), ("OFFLINE".into(), Color::Red));
        n.connection_status = Some(ConnectionStatus::NoStltConn);
        assert_eq!(node_state(&n).0, "OFFLINE(NO CONNECTION TO SATELLITE)");
        n.connection_status = None;
        assert_eq!(node_state(&n).0, "OFFLINE");
        n.flags = vec!["EVACUATE".into()];
        assert_eq!(node_state(&n), ("EVACUATE".into(), Color::Yellow));
        // The marks win over the connection, DELETE over EVACUATE, EVICTED over both.
        n.connection_status = Some(ConnectionStatus::Online);
        assert_eq!(node_state(&n), ("EVACUATE".into(), Color::Yellow));
        n.flags = vec!["EVACUATE".into(), "DELETE".into()];
        assert_eq!(node_state(&n), ("DELETE".into(), Color::Red));
        n.flags = vec!["DELETE".into(), "EVICTED".into()];
        assert_eq!(node_state(&n), ("EVICTED".into(), Color::Red));
    }

    #[test]
    fn node_list_shows_evacuating_and_deleted_nodes() {
        let mut evacuating = node("alpha", "10.0.0.1", ConnectionStatus::Online);
        evacuating.flags = vec!["EVACUATE".into()];
        let mut deleted = node("bravo", "10.0.0.2", ConnectionStatus::Offline);
        deleted.flags = vec!["DELETE".into()];
        let online = node("charlie", "10.0.0.3", ConnectionStatus::Online);
        let text = render_nodes(&[evacuating, deleted, online], &list_args(), &PLAIN);
        assert!(
            text.contains("| alpha   | COMBINED | 10.0.0.1:3366 (PLAIN) | EVACUATE |"),
            "{text}"
        );
        assert!(
            text.contains("| bravo   | COMBINED | 10.0.0.2:3366 (PLAIN) | DELETE   |"),
            "{text}"
        );
        assert!(
            text.contains("| charlie | COMBINED | 10.0.0.3:3366 (PLAIN) | Online   |"),
            "{text}"
        );
    }

    #[test]
    fn a_node_that_is_not_online_says_why_below_the_table() {
        let mut refused = node("bravo", "10.0.0.2", ConnectionStatus::FullSyncFailed);
        refused.connection_status_reason = Some(
            "the offered state differs from the one this node applied under the same stamp 3/9: \
             two controllers with copies of one store are writing; stop all but one"
                .into(),
        );
        let mut offline = node("charlie", "10.0.0.3", ConnectionStatus::Offline);
        offline.connection_status_reason =
            Some("connect: Connection refused (os error 111)".into());
        let nodes = vec![
            offline,
            node("alpha", "10.0.0.1", ConnectionStatus::Online),
            refused,
        ];
        assert_eq!(
            render_nodes(&nodes, &list_args(), &PLAIN),
            "\
+------------------------------------------------------------------------+
| Node    | NodeType | Addresses             | State                     |
|========================================================================|
| alpha   | COMBINED | 10.0.0.1:3366 (PLAIN) | Online                    |
| bravo   | COMBINED | 10.0.0.2:3366 (PLAIN) | OFFLINE(FULL SYNC FAILED) |
| charlie | COMBINED | 10.0.0.3:3366 (PLAIN) | OFFLINE                   |
+------------------------------------------------------------------------+
bravo: OFFLINE(FULL SYNC FAILED)
    the offered state differs from the one this node applied under the same stamp 3/9: two controllers with copies of one store are writing; stop all but one
charlie: OFFLINE
    connect: Connection refused (os error 111)
"
        );
        // The state is painted as in the table.
        let colored = connection_reasons(
            &nodes,
            &Style {
                utf8: false,
                color: true,
            },
        );
        assert!(
            colored.starts_with("bravo: \u{1b}[1;31mOFFLINE(FULL SYNC FAILED)\u{1b}[0m\n"),
            "{colored:?}"
        );
        // A controller that gives no reason (LINSTOR's) changes nothing.
        let plain = vec![node("alpha", "10.0.0.1", ConnectionStatus::Offline)];
        assert_eq!(connection_reasons(&plain, &PLAIN), "");
    }

    fn orphan(node: &str, resource: &str, identity: Option<&str>) -> Orphan {
        serde_json::from_value(serde_json::json!({
            "node_name": node, "resource_name": resource, "volume_number": 0,
            "identity": identity, "provider_kind": "FILE_THIN",
            "pool_name": format!("/srv/{node}/pool"), "storage_pool_name": "pool_ssd",
            "backing_name": format!("{resource}_00000"),
            "reason": "its resource is not in this node's desired state"
        }))
        .unwrap()
    }

    #[test]
    fn orphans_table() {
        let orphans = vec![
            orphan(
                "node10",
                "web",
                Some("6b1f0c2e-8d6a-4e55-9d1e-2f0a7c3b9e41"),
            ),
            orphan("node2", "db", None),
        ];
        assert_eq!(
            render_orphans(&orphans, &TableOpts::default(), &PLAIN),
            "\
+-------------------------------------------------------------------------------------------------------------------------------------------------------------+
| Node   | Resource | VlmNr | Pool     | BackingVolume              | Identity                             | Reason                                           |
|=============================================================================================================================================================|
| node2  | db       |     0 | pool_ssd | /srv/node2/pool/db_00000   |                                      | its resource is not in this node's desired state |
| node10 | web      |     0 | pool_ssd | /srv/node10/pool/web_00000 | 6b1f0c2e-8d6a-4e55-9d1e-2f0a7c3b9e41 | its resource is not in this node's desired state |
+-------------------------------------------------------------------------------------------------------------------------------------------------------------+
"
        );
        let mut lvm = orphan("a", "r", None);
        lvm.pool_name = "vg0/".into();
        assert_eq!(backing_volume(&lvm), "vg0/r_00000");
        assert_eq!(
            render_orphans(&[], &TableOpts::default(), &PLAIN)
                .lines()
                .count(),
            4,
            "an empty list is a header"
        );
    }

    #[test]
    fn inactive_interfaces_give_no_address() {
        let mut n = node("a", "1.1.1.1", ConnectionStatus::Online);
        n.net_interfaces[0].is_active = Some(false);
        assert_eq!(active_address(&n), "");
    }

    #[test]
    fn default_ports() {
        assert_eq!(
            default_port(NodeType::Satellite, EncryptionType::Plain),
            3366
        );
        assert_eq!(
            default_port(NodeType::Combined, EncryptionType::Plain),
            3366
        );
        assert_eq!(
            default_port(NodeType::Controller, EncryptionType::Plain),
            3370
        );
        assert_eq!(default_port(NodeType::Satellite, EncryptionType::Ssl), 3367);
        assert_eq!(default_port(NodeType::Combined, EncryptionType::Ssl), 3371);
    }

    #[test]
    fn node_create_resolves_the_name_when_no_ip_is_given() {
        let create = NodeCreate {
            port: None,
            node_type: NodeType::Combined,
            communication_type: EncryptionType::Plain,
            interface_type: "ip".into(),
            interface_name: "default".into(),
            name: "node1".into(),
            ip: None,
        };
        let node = new_node(&create, |name| {
            assert_eq!(name, "node1");
            Ok("10.0.0.7".into())
        })
        .unwrap();
        assert_eq!(node.net_interface.address, "10.0.0.7");
        assert_eq!(node.net_interface.satellite_port, Some(3366));
        assert!(new_node(&create, |_| Err(Failure::usage("no"))).is_err());
        assert!(resolve_address("localhost").is_err(), "loopback is refused");
        assert!(resolve_address("name.invalid.").is_err());
    }

    #[test]
    fn interfaces_in_controller_order() {
        let mut n = node("alpha", "10.0.0.1", ConnectionStatus::Online);
        n.net_interfaces.push(NetInterface {
            name: "backup".into(),
            address: "192.168.0.1".into(),
            satellite_port: None,
            satellite_encryption_type: None,
            is_active: Some(false),
            uuid: None,
        });
        assert_eq!(
            render_interfaces(&n, &PLAIN),
            "\
+----------------------------------------------------------------+
| alpha     | NetInterface | IP          | Port | EncryptionType |
|================================================================|
| + StltCon | default      | 10.0.0.1    | 3366 | PLAIN          |
| +         | backup       | 192.168.0.1 |      |                |
+----------------------------------------------------------------+
"
        );
    }
}
