//! `resource-group` (`rg`) and `volume-group` (`vg`): templates of resource definitions and
//! `spawn-resources`.

use clap::{Args, Subcommand};

use super::{
    NamedListProperties, NamedSetProperty, PastableOnly, PlaceCount, PlacementOpts, PropertyArgs,
    ProviderList, SizeKib, TableOpts, parse_peer_slots, parse_place_count, parse_provider_list,
    parse_size, parse_volume_number,
};

#[derive(Debug, Subcommand)]
pub enum ResourceGroupCommand {
    /// Create a resource group.
    #[command(visible_alias = "c")]
    Create(ResourceGroupCreate),
    /// Bring the group's resource definitions (every group's, without a name) to the place
    /// count: missing replicas are placed, surplus diskful ones removed.
    #[command(visible_alias = "adj")]
    Adjust(crate::commands::physical_storage::ResourceGroupAdjustArgs),
    /// List resource groups.
    #[command(visible_alias = "l")]
    List(ResourceGroupList),
    /// Change a resource group.
    #[command(visible_alias = "m")]
    Modify(ResourceGroupCreate),
    /// Delete a resource group.
    #[command(visible_alias = "d")]
    Delete(NameArg),
    /// Create a resource definition from the group and place its resources.
    #[command(visible_alias = "spawn")]
    SpawnResources(Spawn),
    /// Set a resource group property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(NamedSetProperty),
    /// Print a resource group's properties.
    #[command(visible_alias = "lp")]
    ListProperties(NamedListProperties),
    /// How large a volume the group can place now, and how much in all.
    #[command(visible_alias = "qsi")]
    QuerySizeInfo(crate::commands::resource_group_size::QuerySizeInfo),
    /// The largest volume the group could place, per storage pool.
    #[command(visible_alias = "qmvs")]
    QueryMaxVolumeSize(crate::commands::resource_group_size::QueryMaxVolumeSize),
}

#[derive(Debug, Args)]
pub struct ResourceGroupCreate {
    /// Description of the resource group.
    #[arg(short = 'd', long)]
    pub description: Option<String>,
    /// DRBD peer slots of new resources.
    #[arg(long, value_parser = parse_peer_slots)]
    pub peer_slots: Option<i32>,
    /// Number of diskful replicas (0 removes the setting).
    #[arg(long, value_name = "REPLICA_COUNT", value_parser = parse_place_count)]
    pub place_count: Option<PlaceCount>,
    #[command(flatten)]
    pub placement: PlacementOpts,
    /// Comma separated providers the replicas may use.
    #[arg(short = 'p', long, value_parser = parse_provider_list)]
    pub providers: Option<ProviderList>,
    /// Name of the resource group.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ResourceGroupList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only these resource groups.
    #[arg(short = 'r', long, num_args = 1..)]
    pub resource_groups: Vec<String>,
    /// Only groups with these properties (KEY or KEY=VALUE).
    #[arg(long, num_args = 1..)]
    pub props: Vec<String>,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(short = 's', long, num_args = 1..)]
    pub show_props: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Spawn {
    /// Allow fewer volume sizes than the group has volume groups.
    #[arg(short = 'p', long)]
    pub partial: bool,
    /// Create the definitions only; place nothing.
    #[arg(short = 'd', long)]
    pub definition_only: bool,
    /// User specified name of the resource definition.
    #[arg(long)]
    pub external_name: Option<String>,
    /// DRBD peer slots of new resources.
    #[arg(long, value_parser = parse_peer_slots)]
    pub peer_slots: Option<i32>,
    /// Number of diskful replicas.
    #[arg(long, value_name = "REPLICA_COUNT", value_parser = parse_place_count)]
    pub place_count: Option<PlaceCount>,
    #[command(flatten)]
    pub placement: PlacementOpts,
    /// Comma separated providers the replicas may use.
    #[arg(long, visible_alias = "prov", value_parser = parse_provider_list)]
    pub providers: Option<ProviderList>,
    /// Resource group to spawn from.
    pub resource_group_name: String,
    /// Name of the new resource definition.
    pub resource_definition_name: String,
    /// One size per volume group (e.g. 2G, 500MiB; a bare number is GiB).
    #[arg(value_parser = parse_size)]
    pub volume_sizes: Vec<SizeKib>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The name.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum VolumeGroupCommand {
    /// Add a volume group to a resource group.
    #[command(visible_alias = "c")]
    Create(VolumeGroupCreate),
    /// List a resource group's volume groups.
    #[command(visible_alias = "l")]
    List(VolumeGroupList),
    /// Delete a volume group.
    #[command(visible_alias = "d")]
    Delete(VolumeGroupRef),
    /// Set a volume group property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(VolumeGroupSetProperty),
    /// Print a volume group's properties.
    #[command(visible_alias = "lp")]
    ListProperties(VolumeGroupListProperties),
}

#[derive(Debug, Args)]
pub struct VolumeGroupCreate {
    /// Volume number (the next free one if not given).
    #[arg(short = 'n', long, value_parser = parse_volume_number)]
    pub vlmnr: Option<i32>,
    /// Sizes of this volume are gross sizes.
    #[arg(long)]
    pub gross: bool,
    /// Name of the resource group.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct VolumeGroupList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(short = 's', long, num_args = 1..)]
    pub show_props: Vec<String>,
    /// Name of the resource group.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct VolumeGroupRef {
    /// Name of the resource group.
    pub name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
}

#[derive(Debug, Args)]
pub struct VolumeGroupSetProperty {
    /// Name of the resource group.
    pub name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct VolumeGroupListProperties {
    #[command(flatten)]
    pub table: PastableOnly,
    /// Name of the resource group.
    pub name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
}
