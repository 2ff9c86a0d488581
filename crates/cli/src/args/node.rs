//! `node` (`n`): nodes, their network interfaces and orphaned volumes.

use clap::{Args, Subcommand};
use ferrite_types::{EncryptionType, NodeType};

use super::{PastableOnly, PropertyArgs, TableOpts, parse_port, parse_volume_number};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Register a node; its satellite is reached at IP (resolved from NAME if not given).
    #[command(visible_alias = "c")]
    Create(NodeCreate),
    /// List nodes.
    #[command(visible_alias = "l")]
    List(NodeList),
    /// Remove a node from the cluster.
    #[command(visible_alias = "d")]
    Delete(NodeDelete),
    /// Remove a node that is gone for good, without waiting for its satellite.
    #[command(visible_alias = "lo")]
    Lost(NodeDelete),
    /// Move a node's replicated resources to other nodes, then delete them here; the node
    /// takes no new resources.
    #[command(visible_alias = "evac")]
    Evacuate(crate::commands::physical_storage::NodeEvacuateArgs),
    /// End a node's evacuation: it takes resources again.
    #[command(visible_alias = "rst")]
    Restore(crate::commands::physical_storage::NodeRestoreArgs),
    /// Change a node's type.
    #[command(visible_alias = "m")]
    Modify(NodeModifyArgs),
    /// Reconnect the controller to these nodes' satellites.
    #[command(visible_alias = "rc")]
    Reconnect(NodeReconnect),
    /// Set a node property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(NodeSetProperty),
    /// Print a node's properties.
    #[command(visible_alias = "lp")]
    ListProperties(NodeListProperties),
    /// Network interface commands.
    #[command(subcommand, visible_alias = "i")]
    Interface(InterfaceCommand),
    /// Orphans: backing volumes a node keeps that no resource wants and no deletion named.
    #[command(
        subcommand,
        long_about = "Orphans: backing volumes a node keeps although no resource wants them and \
                      no deletion named them, e.g. volumes of resources a restored store does \
                      not know, or of an earlier resource definition of the same name. A node \
                      never deletes an orphan by itself: it stays, with its data, until an \
                      operator deletes it with 'ferrite node orphans delete'."
    )]
    Orphans(OrphanCommand),
}

#[derive(Debug, Subcommand)]
pub enum OrphanCommand {
    /// List the orphans of the given nodes (of every node without a name).
    #[command(visible_alias = "l")]
    List(OrphanList),
    /// Delete one orphan and its data, irreversibly; the only way an orphan is ever removed.
    #[command(
        visible_alias = "d",
        long_about = "Delete one orphaned backing volume and the data on it. This cannot be \
                      undone. It is the only way an orphan is ever removed: nodes never delete \
                      one by themselves.\n\n\
                      Name the orphan exactly as 'ferrite node orphans list' shows it: its \
                      node, resource and volume number, --pool-name with the directory, volume \
                      group or dataset it is in (the BackingVolume column shows it before the \
                      volume's own name), and --identity with its identity. Without --identity \
                      the command names an orphan that has no identity (a volume made before \
                      volumes had identities). The node checks again before it deletes \
                      anything, and refuses if no orphan matches every part."
    )]
    Delete(OrphanDelete),
}

#[derive(Debug, Args)]
pub struct OrphanList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only the orphans of these nodes.
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct OrphanDelete {
    /// Where the orphan is: the directory, volume group or dataset, exactly as listed.
    #[arg(long, value_name = "LOCATION")]
    pub pool_name: String,
    /// The orphan's identity, as listed; leave it out for an orphan listed without one.
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// Node that keeps the orphan.
    pub node_name: String,
    /// Resource name of the orphan.
    pub resource_name: String,
    /// Volume number of the orphan.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
}

#[derive(Debug, Args)]
pub struct NodeCreate {
    /// Satellite port (default: 3366 plain, 3367 ssl; a controller node 3370/3371).
    #[arg(short = 'p', long, value_parser = parse_port)]
    pub port: Option<u16>,
    /// Node type.
    #[arg(long, default_value = "satellite", value_parser = parse_node_type)]
    pub node_type: NodeType,
    /// How the controller talks to the satellite.
    #[arg(long, default_value = "plain", value_parser = parse_encryption)]
    pub communication_type: EncryptionType,
    /// Interface type (only ip).
    #[arg(long, default_value = "ip", value_parser = ["ip", "IP"])]
    pub interface_type: String,
    /// Name of the node's first network interface.
    #[arg(long, default_value = "default")]
    pub interface_name: String,
    /// Name of the new node; must match its hostname.
    pub name: String,
    /// IP address of the node; resolved from the name when not given.
    pub ip: Option<String>,
}

pub fn parse_node_type(text: &str) -> Result<NodeType, String> {
    text.parse::<NodeType>().map_err(|e| e.to_string())
}

pub fn parse_encryption(text: &str) -> Result<EncryptionType, String> {
    text.parse::<EncryptionType>().map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct NodeList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only these nodes.
    #[arg(short = 'n', long, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Show the nodes' Aux/ properties.
    #[arg(long)]
    pub show_aux_props: bool,
    /// Only nodes with these properties (KEY or KEY=VALUE).
    #[arg(long, num_args = 1..)]
    pub props: Vec<String>,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(short = 's', long, num_args = 1..)]
    pub show_props: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NodeDelete {
    /// Accepted for compatibility; the call always waits.
    #[arg(long = "async")]
    pub async_: bool,
    /// Name of the node.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct NodeModifyArgs {
    /// New node type.
    #[arg(short = 't', long, default_value = "satellite", value_parser = parse_node_type)]
    pub node_type: NodeType,
    /// Name of the node.
    pub node_name: String,
}

#[derive(Debug, Args)]
pub struct NodeReconnect {
    /// Nodes to reconnect.
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NodeSetProperty {
    /// Name of the node.
    pub node_name: String,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct NodeListProperties {
    #[command(flatten)]
    pub table: PastableOnly,
    /// Name of the node.
    pub node_name: String,
}

#[derive(Debug, Subcommand)]
pub enum InterfaceCommand {
    /// Add a network interface to a node.
    #[command(visible_alias = "c")]
    Create(InterfaceCreate),
    /// List a node's network interfaces.
    #[command(visible_alias = "l")]
    List(InterfaceList),
    /// Change a network interface.
    #[command(visible_alias = "m")]
    Modify(InterfaceModify),
    /// Remove network interfaces from a node.
    #[command(visible_alias = "d")]
    Delete(InterfaceDelete),
}

#[derive(Debug, Args)]
pub struct InterfaceCreate {
    /// Satellite port on this interface.
    #[arg(short = 'p', long, value_parser = parse_port)]
    pub port: Option<u16>,
    /// How the controller talks to the satellite on this interface.
    #[arg(long, default_value = "plain", value_parser = parse_encryption)]
    pub communication_type: EncryptionType,
    /// Make this the interface the controller reaches the satellite on.
    #[arg(long)]
    pub active: bool,
    /// Name of the node.
    pub node_name: String,
    /// Name of the interface.
    pub interface_name: String,
    /// IP address of the interface.
    pub ip: String,
}

#[derive(Debug, Args)]
pub struct InterfaceList {
    #[command(flatten)]
    pub table: PastableOnly,
    /// Name of the node.
    pub node_name: String,
}

#[derive(Debug, Args)]
pub struct InterfaceModify {
    /// Satellite port on this interface.
    #[arg(short = 'p', long, value_parser = parse_port)]
    pub port: Option<u16>,
    /// How the controller talks to the satellite on this interface.
    #[arg(long, value_parser = parse_encryption)]
    pub communication_type: Option<EncryptionType>,
    /// Make this the interface the controller reaches the satellite on.
    #[arg(long)]
    pub active: bool,
    /// New IP address.
    #[arg(long)]
    pub ip: Option<String>,
    /// Name of the node.
    pub node_name: String,
    /// Name of the interface.
    pub interface_name: String,
}

#[derive(Debug, Args)]
pub struct InterfaceDelete {
    /// Name of the node.
    pub node_name: String,
    /// Interfaces to remove.
    #[arg(required = true)]
    pub interface_name: Vec<String>,
}
