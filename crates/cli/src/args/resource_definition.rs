//! `resource-definition` (`rd`) and `volume-definition` (`vd`).

use clap::{Args, Subcommand};

use super::{
    LayerList, NamedListProperties, NamedSetProperty, PastableOnly, PlaceCount, PlacementOpts,
    PropertyArgs, ProviderList, SizeKib, TableOpts, parse_layer_list, parse_peer_slots,
    parse_place_count, parse_port, parse_provider_list, parse_size, parse_volume_number,
};

#[derive(Debug, Subcommand)]
pub enum ResourceDefinitionCommand {
    /// Create a resource definition.
    #[command(visible_alias = "c")]
    Create(ResourceDefinitionCreate),
    /// Place a resource definition's resources automatically.
    #[command(visible_alias = "ap")]
    AutoPlace(AutoPlace),
    /// List resource definitions.
    #[command(visible_alias = "l")]
    List(ResourceDefinitionList),
    /// Change a resource definition.
    #[command(visible_alias = "m")]
    Modify(ResourceDefinitionModifyArgs),
    /// Delete resource definitions with all their resources.
    #[command(visible_alias = "d")]
    Delete(ResourceDefinitionDelete),
    /// Set a resource definition property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(NamedSetProperty),
    /// Print a resource definition's properties.
    #[command(visible_alias = "lp")]
    ListProperties(NamedListProperties),
    /// Wait until every diskful replica of the definition is in sync.
    #[command(name = "wait-sync")]
    WaitSync(crate::commands::wait_sync::WaitSync),
    /// Clone a resource definition with its volumes' data.
    #[command(visible_alias = "cln")]
    Clone(crate::commands::snapshot::ResourceDefinitionClone),
}

#[derive(Debug, Args)]
pub struct ResourceDefinitionCreate {
    /// Preferred DRBD port.
    #[arg(short = 'p', long, value_parser = parse_port)]
    pub port: Option<u16>,
    /// User specified name.
    #[arg(short = 'e', long)]
    pub external_name: Option<String>,
    /// Comma separated layer list, top-most first.
    #[arg(short = 'l', long, value_parser = parse_layer_list)]
    pub layer_list: Option<LayerList>,
    /// DRBD peer slots of new resources.
    #[arg(long, value_parser = parse_peer_slots)]
    pub peer_slots: Option<i32>,
    /// Resource group the definition belongs to.
    #[arg(long)]
    pub resource_group: Option<String>,
    /// Name of the resource definition (ignored with --external-name).
    #[arg(required_unless_present = "external_name")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct AutoPlace {
    /// Number of diskful replicas: N, +N or max.
    #[arg(long, value_name = "REPLICA_COUNT", value_parser = parse_place_count)]
    pub place_count: Option<PlaceCount>,
    #[command(flatten)]
    pub placement: PlacementOpts,
    /// Comma separated providers the replicas may use.
    #[arg(short = 'p', long, value_parser = parse_provider_list)]
    pub providers: Option<ProviderList>,
    /// Place DRBD_DISKLESS resources on the remaining nodes.
    #[arg(long)]
    pub drbd_diskless: bool,
    /// Name of the resource definition.
    pub resource_definition_name: String,
}

#[derive(Debug, Args)]
pub struct ResourceDefinitionList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only these resource definitions.
    #[arg(short = 'r', long, num_args = 1..)]
    pub resource_definitions: Vec<String>,
    /// Show the user specified names.
    #[arg(short = 'e', long)]
    pub external_name: bool,
    /// Only definitions with these properties (KEY or KEY=VALUE).
    #[arg(long, num_args = 1..)]
    pub props: Vec<String>,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(short = 's', long, num_args = 1..)]
    pub show_props: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ResourceDefinitionModifyArgs {
    /// DRBD peer slots of new resources.
    #[arg(long, value_parser = parse_peer_slots)]
    pub peer_slots: Option<i32>,
    /// Preferred DRBD port.
    #[arg(short = 'p', long, value_parser = parse_port)]
    pub port: Option<u16>,
    /// Move the definition to this resource group.
    #[arg(long)]
    pub resource_group: Option<String>,
    /// Name of the resource definition.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ResourceDefinitionDelete {
    /// Accepted for compatibility; the call always waits.
    #[arg(long = "async")]
    pub async_: bool,
    /// Resource definitions to delete.
    #[arg(required = true)]
    pub name: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum VolumeDefinitionCommand {
    /// Add a volume to a resource definition.
    #[command(visible_alias = "c")]
    Create(VolumeDefinitionCreate),
    /// List volume definitions.
    #[command(visible_alias = "l")]
    List(VolumeDefinitionList),
    /// Change a volume definition's size.
    #[command(visible_alias = "size")]
    SetSize(VolumeDefinitionSetSize),
    /// Delete a volume definition.
    #[command(visible_alias = "d")]
    Delete(VolumeDefinitionDelete),
    /// Set a volume definition property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(VolumeDefinitionSetProperty),
    /// Print a volume definition's properties.
    #[command(visible_alias = "lp")]
    ListProperties(VolumeDefinitionListProperties),
}

#[derive(Debug, Args)]
pub struct VolumeDefinitionCreate {
    /// Volume number (the next free one if not given).
    #[arg(short = 'n', long, value_parser = parse_volume_number)]
    pub vlmnr: Option<i32>,
    /// DRBD minor number.
    #[arg(short = 'm', long)]
    pub minor: Option<i32>,
    /// The size is a gross size.
    #[arg(long)]
    pub gross: bool,
    /// Name of the resource definition.
    pub resource_name: String,
    /// Size of the volume (e.g. 2G, 500MiB; a bare number is GiB).
    #[arg(value_parser = parse_size)]
    pub size: SizeKib,
}

#[derive(Debug, Args)]
pub struct VolumeDefinitionList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only these resource definitions.
    #[arg(short = 'r', long, num_args = 1..)]
    pub resource_definitions: Vec<String>,
    /// Show the user specified names.
    #[arg(short = 'e', long)]
    pub external_name: bool,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(short = 's', long, num_args = 1..)]
    pub show_props: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumeDefinitionSetSize {
    /// The size is a gross size.
    #[arg(long)]
    pub gross: bool,
    /// Name of the resource definition.
    pub resource_name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
    /// New size (e.g. 4G; a bare number is GiB).
    #[arg(value_parser = parse_size)]
    pub size: SizeKib,
}

#[derive(Debug, Args)]
pub struct VolumeDefinitionDelete {
    /// Accepted for compatibility; the call always waits.
    #[arg(long = "async")]
    pub async_: bool,
    /// Name of the resource definition.
    pub resource_name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
}

#[derive(Debug, Args)]
pub struct VolumeDefinitionSetProperty {
    /// Name of the resource definition.
    pub resource_name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct VolumeDefinitionListProperties {
    #[command(flatten)]
    pub table: PastableOnly,
    /// Name of the resource definition.
    pub resource_name: String,
    /// Volume number.
    #[arg(value_parser = parse_volume_number)]
    pub volume_nr: i32,
}
