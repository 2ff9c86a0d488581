//! The command line: LINSTOR's command tree with its aliases (`node create` = `n c`,
//! `resource-group spawn-resources` = `rg spawn`), options and positional arguments.
//!
//! Global options come before the command, as with `linstor` (some commands reuse their short
//! letters: `vd create -m` is the minor number, `-m` before the command is machine-readable
//! output). Values are checked here, so a bad size, port or layer name is a usage error
//! (exit 2) before anything is sent.

use clap::{ArgAction, Args, Parser, Subcommand};
use ferrite_types::{EncryptionType, LayerKind, NodeType, ProviderKind, parse_size_kib};

/// Global options and the command.
#[derive(Debug, Parser)]
#[command(
    name = "ferrite",
    version,
    about = "Manage a Ferrite cluster: LINSTOR's command tree over the controller's REST API.",
    disable_version_flag = true,
    arg_required_else_help = true,
    after_help = "Controllers are taken from --controllers, else FERRITE_CONTROLLERS, else \
                  LS_CONTROLLERS, else the 'controllers' key of ~/.config/ferrite/client.toml or \
                  /etc/ferrite/client.toml, else localhost:3370.\n\n\
                  Exit codes: 0 success, 1 local failure (e.g. an unreadable config file), 2 usage \
                  error, 3 no such object, 10 the controller answered an error, 20 no controller \
                  could be reached, 21 timeout, 22 a reply that is not LINSTOR's JSON."
)]
pub struct Cli {
    /// Print the client's version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
    /// Do not use colors in output.
    #[arg(long)]
    pub no_color: bool,
    /// Do not use UTF-8 characters in output (tables). The default when not on a terminal.
    #[arg(long)]
    pub no_utf8: bool,
    /// Treat WARNING entries as errors (exit code 10).
    #[arg(long)]
    pub warn_as_error: bool,
    /// Comma separated list of controllers, e.g. "host1:port,host2:port".
    #[arg(long, value_name = "CONTROLLERS")]
    pub controllers: Option<String>,
    /// Print the controller's JSON instead of tables.
    #[arg(short = 'm', long)]
    pub machine_readable: bool,
    /// Machine readable output format; only v1 (the controller's JSON) is supported.
    #[arg(long, value_parser = ["v1"], default_value = "v1")]
    pub output_version: String,
    /// Connection and command timeout in seconds.
    #[arg(short = 't', long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Controller commands.
    #[command(subcommand, visible_alias = "c")]
    Controller(ControllerCommand),
    /// Node commands.
    #[command(subcommand, visible_alias = "n")]
    Node(NodeCommand),
    /// Storage pool commands.
    #[command(subcommand, visible_alias = "sp")]
    StoragePool(StoragePoolCommand),
    /// Resource group commands.
    #[command(subcommand, visible_alias = "rg")]
    ResourceGroup(ResourceGroupCommand),
    /// Volume group commands.
    #[command(subcommand, visible_alias = "vg")]
    VolumeGroup(VolumeGroupCommand),
    /// Resource definition commands.
    #[command(subcommand, visible_alias = "rd")]
    ResourceDefinition(ResourceDefinitionCommand),
    /// Volume definition commands.
    #[command(subcommand, visible_alias = "vd")]
    VolumeDefinition(VolumeDefinitionCommand),
    /// Resource commands.
    #[command(subcommand, visible_alias = "r")]
    Resource(ResourceCommand),
    /// Volume commands.
    #[command(subcommand, visible_alias = "v")]
    Volume(VolumeCommand),
    /// Error report commands.
    #[command(subcommand, visible_alias = "err")]
    ErrorReports(ErrorReportCommand),
    /// Key-value store commands.
    #[command(subcommand, visible_alias = "kv")]
    KeyValueStore(crate::commands::key_value_store::KeyValueStoreCommand),
    /// Node connection commands.
    #[command(subcommand, visible_alias = "nc")]
    NodeConnection(crate::commands::connections::NodeConnectionCommand),
    /// Resource connection commands.
    #[command(subcommand, visible_alias = "rc")]
    ResourceConnection(crate::commands::connections::ResourceConnectionCommand),
    /// Space reporting commands.
    #[command(subcommand, visible_alias = "spr")]
    SpaceReporting(crate::commands::space_reporting::SpaceReportingCommand),
    /// Snapshot commands.
    #[command(subcommand, visible_alias = "s")]
    Snapshot(crate::commands::snapshot::SnapshotCommand),
    /// Physical storage commands: unused disks, device pools.
    #[command(subcommand, visible_alias = "ps")]
    PhysicalStorage(crate::commands::physical_storage::PhysicalStorageCommand),
}

// ---- shared pieces ----------------------------------------------------------------------

/// Table options of list commands.
#[derive(Debug, Clone, Default, Args)]
pub struct TableOpts {
    /// Generate pastable output (ASCII, no colors).
    #[arg(short = 'p', long)]
    pub pastable: bool,
    /// Sort and group rows by these columns.
    #[arg(short = 'g', long, num_args = 1.., value_name = "COLUMN")]
    pub groupby: Vec<String>,
}

/// `set-property`'s key and value.
#[derive(Debug, Clone, Args)]
pub struct PropertyArgs {
    /// The key is an auxiliary property (it is put in the Aux/ namespace).
    #[arg(long)]
    pub aux: bool,
    /// The property key.
    pub key: String,
    /// The value; without one the property is deleted.
    pub value: Option<String>,
}

/// Placement filters shared by `rg create/modify/spawn`, `rd auto-place` and
/// `r create --auto-place`.
#[derive(Debug, Clone, Default, Args)]
pub struct PlacementOpts {
    /// Storage pools to place in; an empty string removes the setting.
    #[arg(short = 's', long, num_args = 0.., value_name = "STORAGE_POOL")]
    pub storage_pool: Option<Vec<String>>,
    /// Diskless storage pools to use; an empty string removes the setting.
    #[arg(long, num_args = 0.., value_name = "STORAGE_POOL")]
    pub diskless_storage_pool: Option<Vec<String>>,
    /// Avoid nodes that already have one of these resources.
    #[arg(long, num_args = 0.., value_name = "RESOURCE_NAME")]
    pub do_not_place_with: Option<Vec<String>>,
    /// Avoid nodes that already have a resource whose name matches this regular expression.
    #[arg(long, value_name = "RESOURCE_REGEX")]
    pub do_not_place_with_regex: Option<String>,
    /// Place replicas on nodes with the same value of these auxiliary node properties.
    #[arg(long, num_args = 0.., value_name = "AUX_PROPERTY")]
    pub replicas_on_same: Option<Vec<String>>,
    /// Place replicas on nodes with different values of these auxiliary node properties.
    #[arg(long, num_args = 0.., value_name = "AUX_PROPERTY")]
    pub replicas_on_different: Option<Vec<String>>,
    /// Pairs of auxiliary property and count: at most COUNT replicas per value.
    #[arg(long, num_args = 0.., value_name = "AUX_PROPERTY COUNT")]
    pub x_replicas_on_different: Option<Vec<String>>,
    /// Add a diskless resource on every node without a replica ("false" unsets it).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "false")]
    pub diskless_on_remaining: Option<String>,
    /// Comma separated layer list, top-most first (e.g. mirror,storage).
    #[arg(short = 'l', long, value_parser = parse_layer_list)]
    pub layer_list: Option<LayerList>,
    /// Only these nodes may get replicas (the API's node_name_list; an empty string removes it).
    #[arg(long, num_args = 0.., value_name = "NODE_NAME")]
    pub node_list: Option<Vec<String>>,
}

/// A comma-separated layer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerList(pub Vec<LayerKind>);

/// A comma-separated provider list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderList(pub Vec<ProviderKind>);

/// A size in KiB, parsed from LINSTOR's units (a bare number is GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeKib(pub u64);

pub fn parse_size(text: &str) -> Result<SizeKib, String> {
    parse_size_kib(text)
        .map(SizeKib)
        .map_err(|error| format!("{error}. {}", error.correction()))
}

pub fn parse_layer_list(text: &str) -> Result<LayerList, String> {
    if text.trim().is_empty() {
        return Ok(LayerList(Vec::new()));
    }
    text.split(',')
        .map(|layer| layer.trim().parse::<LayerKind>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map(LayerList)
}

pub fn parse_provider_list(text: &str) -> Result<ProviderList, String> {
    if text.trim().is_empty() {
        return Ok(ProviderList(Vec::new()));
    }
    text.split(',')
        .map(|provider| {
            provider
                .trim()
                .parse::<ProviderKind>()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(ProviderList)
}

/// A TCP port, 1 to 65535.
pub fn parse_port(text: &str) -> Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("'{text}' is not a port number from 1 to 65535"))
}

/// DRBD peer slots, 1 to 31.
pub fn parse_peer_slots(text: &str) -> Result<i32, String> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|n| (1..=31).contains(n))
        .ok_or_else(|| format!("'{text}' is not a number of peer slots from 1 to 31"))
}

/// A volume number, 0 to 65535.
pub fn parse_volume_number(text: &str) -> Result<i32, String> {
    text.trim()
        .parse::<u16>()
        .map(i32::from)
        .map_err(|_| format!("'{text}' is not a volume number from 0 to 65535"))
}

/// A place count: `N`, `+N` (that many more) or `max`/`all` (every possible node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceCount {
    Total(i32),
    Additional(i32),
    All,
}

pub fn parse_place_count(text: &str) -> Result<PlaceCount, String> {
    let text = text.trim();
    let number = |digits: &str| {
        digits
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("'{text}' is not a replica count (N, +N, max or all)"))
    };
    match text {
        "max" | "all" => Ok(PlaceCount::All),
        _ => match text.strip_prefix('+') {
            Some(digits) => number(digits).map(PlaceCount::Additional),
            None => number(text).map(PlaceCount::Total),
        },
    }
}

// ---- controller -------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Print the controller's version.
    #[command(visible_alias = "v")]
    Version,
    /// Print the controller's properties.
    #[command(visible_alias = "lp")]
    ListProperties(PastableOnly),
    /// Set a controller property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(PropertyArgs),
    /// Write a consistent copy of the controller's store to FILE on the controller's host.
    #[command(
        visible_aliases = ["backupdb", "bakdb"],
        long_about = "Write a consistent copy of the controller's store (an SQLite database, \
                      changes still in the write-ahead log included) to FILE on the \
                      controller's host. FILE must be an absolute path there and must not exist \
                      yet; a backup never overwrites a file.\n\n\
                      Restore it on the stopped controller with \
                      'ferrite-controller --restore FILE'. Satellites then take the restored \
                      state; volumes the backup does not know are kept on their nodes as \
                      orphans ('ferrite node orphans list')."
    )]
    Backup(ControllerBackup),
}

#[derive(Debug, Args)]
pub struct ControllerBackup {
    /// Absolute path of the new backup file on the controller's host.
    #[arg(value_name = "FILE", value_parser = parse_absolute_path)]
    pub file: String,
}

/// A path the controller opens on its own host: only an absolute path means the same there as
/// here, so a relative one is refused before anything is sent.
pub fn parse_absolute_path(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(
            "the backup needs a file name: an absolute path on the controller's host \
                    (e.g. /var/lib/ferrite/backup.db)"
                .to_string(),
        );
    }
    if !std::path::Path::new(text).is_absolute() {
        return Err(format!(
            "'{text}' is a relative path, but the controller writes the backup on its own host, \
             where this client's working directory means nothing; give an absolute path on the \
             controller's host (e.g. /var/lib/ferrite/backup.db)"
        ));
    }
    Ok(text.to_string())
}

#[derive(Debug, Clone, Default, Args)]
pub struct PastableOnly {
    /// Generate pastable output (ASCII, no colors).
    #[arg(short = 'p', long)]
    pub pastable: bool,
}

// ---- node ---------------------------------------------------------------------------------

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

// ---- storage pool -------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum StoragePoolCommand {
    /// Create a storage pool on a node.
    #[command(subcommand, visible_alias = "c")]
    Create(StoragePoolCreate),
    /// List storage pools.
    #[command(visible_alias = "l")]
    List(StoragePoolList),
    /// Delete a storage pool from a node.
    #[command(visible_alias = "d")]
    Delete(StoragePoolRef),
    /// Set a storage pool property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(StoragePoolSetProperty),
    /// Print a storage pool's properties.
    #[command(visible_alias = "lp")]
    ListProperties(StoragePoolListProperties),
}

#[derive(Debug, Subcommand)]
pub enum StoragePoolCreate {
    /// A pool of thick logical volumes in an LVM volume group.
    Lvm(PoolWithDriver),
    /// A pool of thin logical volumes in an LVM thin pool (VG/THINPOOL).
    Lvmthin(PoolWithDriver),
    /// A pool of ZFS volumes in a zpool.
    Zfs(PoolWithDriver),
    /// A pool of thin ZFS volumes in a zpool.
    Zfsthin(PoolWithDriver),
    /// A pool of preallocated files in a directory.
    File(PoolWithDriver),
    /// A pool of sparse files in a directory.
    Filethin(PoolWithDriver),
    /// A pool for diskless resources.
    Diskless(PoolWithoutDriver),
}

#[derive(Debug, Args)]
pub struct PoolOpts {
    /// Name of the space shared by pools on several nodes.
    #[arg(long)]
    pub shared_space: Option<String>,
    /// The pool is locked by something outside Ferrite.
    #[arg(long)]
    pub external_locking: bool,
}

#[derive(Debug, Args)]
pub struct PoolWithDriver {
    #[command(flatten)]
    pub opts: PoolOpts,
    /// Node to create the pool on.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
    /// The volume group, thin pool (VG/LV), zpool or directory to take space from.
    pub driver_pool_name: String,
}

#[derive(Debug, Args)]
pub struct PoolWithoutDriver {
    #[command(flatten)]
    pub opts: PoolOpts,
    /// Node to create the pool on.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct StoragePoolList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only these storage pools.
    #[arg(short = 's', long, num_args = 1..)]
    pub storage_pools: Vec<String>,
    /// Only pools on these nodes.
    #[arg(short = 'n', long, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Only pools with these properties (KEY or KEY=VALUE).
    #[arg(long, num_args = 1..)]
    pub props: Vec<String>,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(long, num_args = 1..)]
    pub show_props: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StoragePoolRef {
    /// Node of the storage pool.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct StoragePoolSetProperty {
    /// Node of the storage pool.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct StoragePoolListProperties {
    #[command(flatten)]
    pub table: PastableOnly,
    /// Node of the storage pool.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
}

// ---- resource group -----------------------------------------------------------------------

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

#[derive(Debug, Args)]
pub struct NamedSetProperty {
    /// The object's name.
    pub name: String,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct NamedListProperties {
    #[command(flatten)]
    pub table: PastableOnly,
    /// The object's name.
    pub name: String,
}

// ---- volume group -------------------------------------------------------------------------

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

// ---- resource definition ------------------------------------------------------------------

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

// ---- volume definition --------------------------------------------------------------------

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

// ---- resource -----------------------------------------------------------------------------

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

// ---- volume -------------------------------------------------------------------------------

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

// ---- error reports ------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum ErrorReportCommand {
    /// List error reports.
    #[command(visible_alias = "l")]
    List(ErrorReportList),
    /// Print error reports.
    #[command(visible_alias = "s")]
    Show(ErrorReportIds),
    /// Delete error reports.
    #[command(visible_alias = "d")]
    Delete(ErrorReportIds),
}

#[derive(Debug, Args)]
pub struct ErrorReportList {
    /// Only reports of the last days/hours, e.g. 3d, 1d10h, 5h.
    #[arg(short = 's', long)]
    pub since: Option<String>,
    /// Only reports up to this date (YYYY-MM-DD).
    #[arg(short = 't', long)]
    pub to: Option<String>,
    /// Only reports from these nodes.
    #[arg(short = 'n', long, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Generate pastable output (ASCII, no colors).
    #[arg(short = 'p', long)]
    pub pastable: bool,
    /// Only reports whose id begins with one of these.
    #[arg(long, num_args = 1..)]
    pub report_id: Vec<String>,
    /// Show every field.
    #[arg(short = 'f', long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct ErrorReportIds {
    /// Report ids.
    #[arg(required = true)]
    pub report_id: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferrite").chain(args.iter().copied()))
    }

    #[test]
    fn the_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn aliases_reach_the_same_commands() {
        for (long, short) in [
            (
                vec!["node", "create", "a", "1.2.3.4"],
                vec!["n", "c", "a", "1.2.3.4"],
            ),
            (
                vec!["resource-group", "spawn-resources", "g", "r", "2G"],
                vec!["rg", "spawn", "g", "r", "2G"],
            ),
            (vec!["resource", "list-volumes"], vec!["r", "lv"]),
            (vec!["volume", "list"], vec!["v", "l"]),
            (
                vec!["resource", "toggle-disk", "n", "r"],
                vec!["r", "td", "n", "r"],
            ),
            (
                vec!["storage-pool", "create", "filethin", "n", "p", "/d"],
                vec!["sp", "c", "filethin", "n", "p", "/d"],
            ),
            (vec!["controller", "version"], vec!["c", "v"]),
            (vec!["error-reports", "list"], vec!["err", "l"]),
            (
                vec!["volume-definition", "set-size", "r", "0", "1G"],
                vec!["vd", "size", "r", "0", "1G"],
            ),
            (
                vec!["controller", "backup", "/var/lib/ferrite/b.db"],
                vec!["c", "backupdb", "/var/lib/ferrite/b.db"],
            ),
            (
                vec!["controller", "backup", "/var/lib/ferrite/b.db"],
                vec!["c", "bakdb", "/var/lib/ferrite/b.db"],
            ),
            (
                vec!["node", "orphans", "list", "alpha"],
                vec!["n", "orphans", "l", "alpha"],
            ),
            (
                vec![
                    "node",
                    "orphans",
                    "delete",
                    "a",
                    "r",
                    "0",
                    "--pool-name",
                    "/p",
                ],
                vec!["n", "orphans", "d", "a", "r", "0", "--pool-name", "/p"],
            ),
            (
                vec!["volume", "recreate-missing", "a", "r", "1"],
                vec!["v", "recreate-missing", "a", "r", "1"],
            ),
        ] {
            let a = format!("{:?}", parse(&long).unwrap().command);
            let b = format!("{:?}", parse(&short).unwrap().command);
            assert_eq!(a, b, "{long:?} vs {short:?}");
        }
    }

    #[test]
    fn sizes_take_linstor_units() {
        let cli = parse(&["rg", "spawn", "g", "r", "2G", "500MiB", "3"]).unwrap();
        let Command::ResourceGroup(ResourceGroupCommand::SpawnResources(spawn)) = cli.command
        else {
            panic!("not a spawn");
        };
        assert_eq!(
            spawn.volume_sizes,
            vec![SizeKib(2 << 20), SizeKib(500 << 10), SizeKib(3 << 20)]
        );
        let error = parse(&["rg", "spawn", "g", "r", "2X"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(error.to_string().contains("unknown unit"));
        assert!(parse(&["vd", "c", "r", "0"]).is_err(), "zero size");
        assert!(parse(&["vd", "c", "r", "-1G"]).is_err());
    }

    #[test]
    fn positional_nodes_before_the_resource() {
        let cli = parse(&["r", "c", "alpha", "bravo", "res", "-s", "pool"]).unwrap();
        let Command::Resource(ResourceCommand::Create(create)) = cli.command else {
            panic!("not a create");
        };
        assert_eq!(create.nodes(), ["alpha", "bravo"]);
        assert_eq!(create.resource_definition(), "res");
        assert_eq!(
            create.placement.storage_pool,
            Some(vec!["pool".to_string()])
        );

        let cli = parse(&["r", "c", "res", "--auto-place", "2"]).unwrap();
        let Command::Resource(ResourceCommand::Create(create)) = cli.command else {
            panic!("not a create");
        };
        assert!(create.nodes().is_empty());
        assert_eq!(create.resource_definition(), "res");
        assert_eq!(create.auto_place, Some(PlaceCount::Total(2)));

        let cli = parse(&["r", "d", "a", "b", "res"]).unwrap();
        let Command::Resource(ResourceCommand::Delete(delete)) = cli.command else {
            panic!("not a delete");
        };
        assert_eq!(delete.node_name, vec!["a", "b"]);
        assert_eq!(delete.name, "res");
        assert!(parse(&["r", "d", "res"]).is_err());
        assert!(parse(&["r", "c"]).is_err());
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for args in [
            vec!["n", "c", "a", "1.2.3.4", "--node-type", "toaster"],
            vec!["n", "c", "a", "-p", "70000"],
            vec!["rg", "c", "g", "--place-count", "two"],
            vec!["rg", "c", "g", "-l", "drbd,nonsense"],
            vec!["rg", "c", "g", "--providers", "TAPE"],
            vec!["r", "td", "n", "r", "--diskless", "--storage-pool", "p"],
            vec!["r", "td", "n", "r", "--diskless", "--migrate-from", "x"],
            vec!["--output-version", "v0", "n", "l"],
            vec!["-t", "0", "n", "l"],
            vec!["vg", "d", "g", "-1"],
            vec!["rd", "c"],
            vec!["n", "frobnicate"],
        ] {
            let error = parse(&args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn a_backup_names_an_absolute_path_on_the_controllers_host() {
        let cli = parse(&["c", "bakdb", "/var/lib/ferrite/backup.db"]).unwrap();
        let Command::Controller(ControllerCommand::Backup(backup)) = cli.command else {
            panic!("not a backup");
        };
        assert_eq!(backup.file, "/var/lib/ferrite/backup.db");
        for relative in ["backup.db", "./backup.db", "../x/backup.db", "~/backup.db"] {
            let error = parse(&["controller", "backup", relative]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{relative}");
            let text = error.to_string();
            assert!(text.contains("relative path"), "{text}");
            assert!(text.contains("controller's host"), "{text}");
        }
        assert!(parse(&["controller", "backup", ""]).is_err());
        assert!(parse(&["controller", "backup"]).is_err());
    }

    #[test]
    fn orphans_are_named_exactly() {
        let cli = parse(&[
            "n",
            "orphans",
            "d",
            "alpha",
            "web",
            "0",
            "--pool-name",
            "/srv/pool",
            "--identity",
            "1234-abcd",
        ])
        .unwrap();
        let Command::Node(NodeCommand::Orphans(OrphanCommand::Delete(delete))) = cli.command else {
            panic!("not an orphan delete");
        };
        assert_eq!(
            (
                delete.node_name.as_str(),
                delete.resource_name.as_str(),
                delete.volume_nr,
                delete.pool_name.as_str(),
                delete.identity.as_deref()
            ),
            ("alpha", "web", 0, "/srv/pool", Some("1234-abcd"))
        );
        let cli = parse(&[
            "n",
            "orphans",
            "d",
            "alpha",
            "web",
            "3",
            "--pool-name",
            "vg0",
        ])
        .unwrap();
        let Command::Node(NodeCommand::Orphans(OrphanCommand::Delete(delete))) = cli.command else {
            panic!("not an orphan delete");
        };
        assert_eq!(
            delete.identity, None,
            "no --identity names an orphan without one"
        );
        // The location is required, and the volume number is a volume number.
        for args in [
            vec!["n", "orphans", "d", "alpha", "web", "0"],
            vec![
                "n",
                "orphans",
                "d",
                "alpha",
                "web",
                "-1",
                "--pool-name",
                "vg0",
            ],
            vec!["n", "orphans", "d", "alpha", "web", "--pool-name", "vg0"],
        ] {
            assert_eq!(parse(&args).unwrap_err().exit_code(), 2, "{args:?}");
        }
        let cli = parse(&["n", "orphans", "l"]).unwrap();
        let Command::Node(NodeCommand::Orphans(OrphanCommand::List(list))) = cli.command else {
            panic!("not an orphan list");
        };
        assert!(list.nodes.is_empty());
        let cli = parse(&["n", "orphans", "l", "a", "b", "-p"]).unwrap();
        let Command::Node(NodeCommand::Orphans(OrphanCommand::List(list))) = cli.command else {
            panic!("not an orphan list");
        };
        assert_eq!(list.nodes, vec!["a", "b"]);
        assert!(list.table.pastable);
    }

    #[test]
    fn recreate_missing_takes_node_resource_and_volume() {
        let cli = parse(&["volume", "recreate-missing", "alpha", "web", "2"]).unwrap();
        let Command::Volume(VolumeCommand::RecreateMissing(missing)) = cli.command else {
            panic!("not a recreate-missing");
        };
        assert_eq!(
            (
                missing.node_name.as_str(),
                missing.resource_name.as_str(),
                missing.volume_nr
            ),
            ("alpha", "web", 2)
        );
        assert!(parse(&["v", "recreate-missing", "alpha", "web"]).is_err());
        assert!(parse(&["v", "recreate-missing", "alpha", "web", "x"]).is_err());
    }

    #[test]
    fn irreversible_commands_say_so_in_their_help() {
        let mut command = Cli::command();
        let orphans = command
            .find_subcommand_mut("node")
            .and_then(|n| n.find_subcommand_mut("orphans"))
            .expect("node orphans");
        // Help is wrapped to the terminal's width: compare words, not lines.
        let words = |text: String| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let delete = words(
            orphans
                .find_subcommand_mut("delete")
                .expect("node orphans delete")
                .render_long_help()
                .to_string(),
        );
        assert!(delete.contains("cannot be undone"), "{delete}");
        assert!(
            delete.contains("only way an orphan is ever removed"),
            "{delete}"
        );
        let missing = words(
            command
                .find_subcommand_mut("volume")
                .and_then(|v| v.find_subcommand_mut("recreate-missing"))
                .expect("volume recreate-missing")
                .render_long_help()
                .to_string(),
        );
        assert!(missing.contains("data it held is gone"), "{missing}");
        assert!(missing.contains("empty volume"), "{missing}");
    }

    #[test]
    fn place_counts() {
        assert_eq!(parse_place_count("2"), Ok(PlaceCount::Total(2)));
        assert_eq!(parse_place_count("+1"), Ok(PlaceCount::Additional(1)));
        assert_eq!(parse_place_count("max"), Ok(PlaceCount::All));
        assert!(parse_place_count("-1").is_err());
        assert!(parse_place_count("+").is_err());
    }

    #[test]
    fn layer_and_provider_lists() {
        assert_eq!(
            parse_layer_list("mirror,STORAGE").unwrap(),
            LayerList(vec![LayerKind::Mirror, LayerKind::Storage])
        );
        assert_eq!(parse_layer_list("").unwrap(), LayerList(vec![]));
        assert_eq!(
            parse_provider_list("lvm_thin,FILE").unwrap(),
            ProviderList(vec![ProviderKind::LvmThin, ProviderKind::File])
        );
    }
}
