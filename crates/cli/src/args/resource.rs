//! `resource` (`r`) and `volume` (`v`): resources on nodes and their volumes.

use clap::{Args, Subcommand};

use super::{
    LayerList, PastableOnly, PlaceCount, PlacementOpts, PropertyArgs, ProviderList, TableOpts,
    parse_layer_list, parse_place_count, parse_port, parse_provider_list, parse_volume_number,
};

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Deploy a resource definition on nodes, or place it automatically with --auto-place.
    #[command(visible_alias = "c")]
    Create(ResourceCreate),
    /// Make a resource available on a node (nothing happens if it already is).
    #[command(visible_alias = "mkavail")]
    MakeAvailable(MakeAvailable),
    /// Activate a deactivated resource: its node brings its volumes up again.
    #[command(visible_alias = "act")]
    Activate(crate::commands::physical_storage::ResourceActivateArgs),
    /// Deactivate a resource: its node keeps its volumes but brings them down.
    #[command(visible_alias = "deact")]
    Deactivate(crate::commands::physical_storage::ResourceActivateArgs),
    /// List resources.
    #[command(visible_alias = "l")]
    List(ResourceList),
    /// List volumes.
    #[command(visible_alias = "lv")]
    ListVolumes(VolumeListArgs),
    /// Remove a resource from nodes.
    #[command(visible_alias = "d")]
    Delete(ResourceDelete),
    /// Turn a diskless resource into a diskful one, or the other way round.
    #[command(visible_alias = "td")]
    ToggleDisk(ToggleDisk),
    /// Set a resource property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(ResourceSetProperty),
    /// Print a resource's properties.
    #[command(visible_alias = "lp")]
    ListProperties(ResourceListProperties),
}

#[derive(Debug, Args)]
#[command(
    override_usage = "ferrite resource create [OPTIONS] [NODE_NAME]... RESOURCE_DEFINITION_NAME"
)]
pub struct ResourceCreate {
    /// Diskless resource (DISKLESS flag; deprecated in linstor in favour of --drbd-diskless).
    #[arg(short = 'd', long)]
    pub diskless: bool,
    /// Diskless resource (DRBD_DISKLESS flag).
    #[arg(long)]
    pub drbd_diskless: bool,
    /// DRBD node id.
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Accepted for compatibility; the call always waits.
    #[arg(long = "async")]
    pub async_: bool,
    /// Create the resource inactive.
    #[arg(long)]
    pub inactive: bool,
    /// DRBD TCP port of the resource on this node.
    #[arg(long, value_parser = parse_port)]
    pub drbd_tcp_port: Option<u16>,
    /// Place the resource automatically on this many nodes (N, +N or max).
    #[arg(long, value_name = "REPLICA_COUNT", value_parser = parse_place_count)]
    pub auto_place: Option<PlaceCount>,
    #[command(flatten)]
    pub placement: PlacementOpts,
    /// Comma separated providers the replicas may use (with --auto-place).
    #[arg(short = 'p', long, value_parser = parse_provider_list)]
    pub providers: Option<ProviderList>,
    /// The nodes to deploy on (none with --auto-place), then the resource definition's name.
    #[arg(required = true, num_args = 1.., value_name = "NAME")]
    pub names: Vec<String>,
}

impl ResourceCreate {
    /// The nodes: every name but the last.
    pub fn nodes(&self) -> &[String] {
        &self.names[..self.names.len().saturating_sub(1)]
    }

    /// The resource definition: the last name.
    pub fn resource_definition(&self) -> &str {
        self.names.last().map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug, Args)]
pub struct MakeAvailable {
    /// Make the resource diskful.
    #[arg(long)]
    pub diskful: bool,
    /// Comma separated layer list, top-most first.
    #[arg(short = 'l', long, value_parser = parse_layer_list)]
    pub layer_list: Option<LayerList>,
    /// Name of the node.
    pub node_name: String,
    /// Name of the resource.
    pub resource_name: String,
}

#[derive(Debug, Args)]
pub struct ResourceList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only these resources.
    #[arg(short = 'r', long, num_args = 1..)]
    pub resources: Vec<String>,
    /// Only resources on these nodes.
    #[arg(short = 'n', long, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Accepted for compatibility; every resource is shown.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only resources that are not healthy.
    #[arg(long)]
    pub faulty: bool,
    /// Only resources with these properties (KEY or KEY=VALUE).
    #[arg(long, num_args = 1..)]
    pub props: Vec<String>,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(short = 's', long, num_args = 1..)]
    pub show_props: Vec<String>,
    /// Show the DRBD ports.
    #[arg(long)]
    pub show_drbd_ports: bool,
    /// Add a column with each peer connection and its state (Connected, Connecting, ...).
    #[arg(long)]
    pub peers: bool,
}

#[derive(Debug, Args)]
pub struct VolumeListArgs {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only volumes on these nodes.
    #[arg(short = 'n', long, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Only volumes in these storage pools.
    #[arg(short = 's', long, num_args = 1..)]
    pub storage_pools: Vec<String>,
    /// Only volumes of these resources.
    #[arg(short = 'r', long, num_args = 1..)]
    pub resources: Vec<String>,
    /// Accepted for compatibility; every volume is shown.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Leave out the replication states.
    #[arg(long, visible_alias = "hrep")]
    pub hide_replication_states: bool,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(long, num_args = 1..)]
    pub show_props: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ResourceDelete {
    /// Accepted for compatibility; the call always waits.
    #[arg(long = "async")]
    pub async_: bool,
    /// Keep the resource as a tiebreaker if the controller wants one.
    #[arg(long)]
    pub keep_tiebreaker: bool,
    /// Nodes to remove the resource from.
    #[arg(required = true, num_args = 1..)]
    pub node_name: Vec<String>,
    /// Name of the resource.
    pub name: String,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").args(["storage_pool", "default_storage_pool", "diskless"]))]
pub struct ToggleDisk {
    /// Add a disk in this storage pool.
    #[arg(short = 's', long)]
    pub storage_pool: Option<String>,
    /// Add a disk in the storage pool the resource's properties name.
    #[arg(long, visible_alias = "dflt")]
    pub default_storage_pool: bool,
    /// Remove the disk.
    #[arg(short = 'd', long, conflicts_with = "migrate_from")]
    pub diskless: bool,
    /// Take the new disk's place from this node's replica, which is removed afterwards.
    #[arg(long, value_name = "MIGRATION_SOURCE")]
    pub migrate_from: Option<String>,
    /// Accepted for compatibility; the call always waits.
    #[arg(long = "async")]
    pub async_: bool,
    /// Name of the node.
    pub node_name: String,
    /// Name of the resource.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ResourceSetProperty {
    /// Name of the node.
    pub node_name: String,
    /// Name of the resource.
    pub name: String,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct ResourceListProperties {
    #[command(flatten)]
    pub table: PastableOnly,
    /// Name of the node.
    pub node_name: String,
    /// Name of the resource.
    pub resource_name: String,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes.
    #[command(visible_alias = "l")]
    List(VolumeListArgs),
    /// Create a missing volume anew, empty: its data is gone.
    #[command(
        long_about = "Create a missing volume anew, empty. The data it held is gone and \
                            stays gone: the node creates an empty volume in its place.\n\n\
                            A node reports a volume it made that has disappeared as missing \
                            and does not create it again by itself, so that storage which is \
                            only late (a file system not mounted yet, a volume group not \
                            activated) is found again instead of hidden by an empty volume. \
                            Use this command only when the data cannot come back. The node \
                            refuses if the volume is not missing."
    )]
    RecreateMissing(RecreateMissing),
}

#[derive(Debug, Args)]
pub struct RecreateMissing {
    /// Node whose volume is missing.
    pub node_name: String,
    /// Name of the resource.
    pub resource_name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
}
