//! `node-connection` (`nc`) and `resource-connection` (`rc`): the properties of the
//! connection between two nodes, or between a definition's resources on two nodes.

use clap::{Args, Subcommand};
use ferrite_types::rest::Props;

use super::{Ctx, Outcome, emit, property_change};
use crate::args::{PropertyArgs, TableOpts};
use crate::output::Exit;
use crate::table::{Column, Table};

#[derive(Debug, Subcommand)]
pub enum NodeConnectionCommand {
    /// List node connections with properties.
    #[command(visible_alias = "l")]
    List(NodeConnectionList),
    /// Print the properties of the connection between two nodes.
    #[command(visible_alias = "lp")]
    ListProperties(NodePair),
    /// Set a property of the connection between two nodes (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(NodePairProperty),
}

#[derive(Debug, Subcommand)]
pub enum ResourceConnectionCommand {
    /// List a resource definition's resource connections with properties.
    #[command(visible_alias = "l")]
    List(ResourceConnectionList),
    /// Print the properties of the connection between a resource's replicas on two nodes.
    #[command(visible_alias = "lp")]
    ListProperties(ResourcePair),
    /// Set a property of the connection between a resource's replicas on two nodes (no value
    /// deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(ResourcePairProperty),
}

#[derive(Debug, Args)]
pub struct NodeConnectionList {
    /// Only connections of this node (and, with a second node, only that pair).
    pub node_a: Option<String>,
    pub node_b: Option<String>,
    #[command(flatten)]
    pub table: TableOpts,
}

#[derive(Debug, Args)]
pub struct NodePair {
    pub node_a: String,
    pub node_b: String,
    #[command(flatten)]
    pub table: TableOpts,
}

#[derive(Debug, Args)]
pub struct NodePairProperty {
    pub node_a: String,
    pub node_b: String,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct ResourceConnectionList {
    /// The resource definition.
    pub resource: String,
    #[command(flatten)]
    pub table: TableOpts,
}

#[derive(Debug, Args)]
pub struct ResourcePair {
    pub node_a: String,
    pub node_b: String,
    /// The resource definition.
    pub resource: String,
    #[command(flatten)]
    pub table: TableOpts,
}

#[derive(Debug, Args)]
pub struct ResourcePairProperty {
    pub node_a: String,
    pub node_b: String,
    /// The resource definition.
    pub resource: String,
    #[command(flatten)]
    pub property: PropertyArgs,
}

/// `linstor`'s columns: the two nodes and the properties, one `key=value` per line.
fn render(ctx: &Ctx, rows: impl Iterator<Item = (String, String, Props)>, pastable: bool) {
    let mut table = Table::new(vec![
        Column::new("Node A"),
        Column::new("Node B"),
        Column::new("Properties"),
    ]);
    for (node_a, node_b, props) in rows {
        let props: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.row(vec![node_a.into(), node_b.into(), props.join("\n").into()]);
    }
    emit(&table.render(&ctx.table_style(pastable)));
}

pub fn run_node(ctx: &Ctx, command: NodeConnectionCommand) -> Outcome {
    match command {
        NodeConnectionCommand::List(list) => {
            let listed = ctx
                .client
                .node_connections(list.node_a.as_deref(), list.node_b.as_deref())?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&listed.raw));
            }
            render(
                ctx,
                listed
                    .items
                    .into_iter()
                    .map(|c| (c.node_a, c.node_b, c.props)),
                list.table.pastable,
            );
            Ok(Exit::Ok)
        }
        NodeConnectionCommand::ListProperties(pair) => {
            let listed = ctx
                .client
                .node_connections(Some(&pair.node_a), Some(&pair.node_b))?;
            let props = listed.items.into_iter().next().map(|c| c.props);
            Ok(ctx.properties(Some(&props.unwrap_or_default()), pair.table.pastable))
        }
        NodeConnectionCommand::SetProperty(set) => ctx.one(ctx.client.modify_node_connection(
            &set.node_a,
            &set.node_b,
            &property_change(&set.property),
        )),
    }
}

pub fn run_resource(ctx: &Ctx, command: ResourceConnectionCommand) -> Outcome {
    match command {
        ResourceConnectionCommand::List(list) => {
            let listed = ctx.client.resource_connections(&list.resource)?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&listed.raw));
            }
            render(
                ctx,
                listed
                    .items
                    .into_iter()
                    .map(|c| (c.node_a, c.node_b, c.props)),
                list.table.pastable,
            );
            Ok(Exit::Ok)
        }
        ResourceConnectionCommand::ListProperties(pair) => {
            let listed =
                ctx.client
                    .resource_connection(&pair.resource, &pair.node_a, &pair.node_b)?;
            let props = listed.items.into_iter().next().map(|c| c.props);
            Ok(ctx.properties(Some(&props.unwrap_or_default()), pair.table.pastable))
        }
        ResourceConnectionCommand::SetProperty(set) => {
            ctx.one(ctx.client.modify_resource_connection(
                &set.resource,
                &set.node_a,
                &set.node_b,
                &property_change(&set.property),
            ))
        }
    }
}
