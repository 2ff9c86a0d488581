//! The command line: LINSTOR's command tree with its aliases (`node create` = `n c`,
//! `resource-group spawn-resources` = `rg spawn`), options and positional arguments.
//!
//! Global options come before the command, as with `linstor` (some commands reuse their short
//! letters: `vd create -m` is the minor number, `-m` before the command is machine-readable
//! output). Values are checked here, so a bad size, port or layer name is a usage error
//! (exit 2) before anything is sent.
//!
//! This module owns the global options, the top of the tree and the pieces several command
//! families share (table options, `set-property`'s arguments, placement filters, value parsers).
//! Each submodule owns one family's arguments, as `commands/` owns how they run; the families
//! not listed here (`kv`, `nc`/`rc`, `spr`, `s`, `ps`) keep their arguments next to their code in
//! `commands/`.

pub mod controller;
pub mod error_reports;
pub mod node;
pub mod resource;
pub mod resource_definition;
pub mod resource_group;
pub mod storage_pool;

use clap::{ArgAction, Args, Parser, Subcommand};
use ferrite_types::{LayerKind, ProviderKind, parse_size_kib};

use self::controller::ControllerCommand;
use self::error_reports::ErrorReportCommand;
use self::node::NodeCommand;
use self::resource::{ResourceCommand, VolumeCommand};
use self::resource_definition::{ResourceDefinitionCommand, VolumeDefinitionCommand};
use self::resource_group::{ResourceGroupCommand, VolumeGroupCommand};
use self::storage_pool::StoragePoolCommand;

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

#[derive(Debug, Clone, Default, Args)]
pub struct PastableOnly {
    /// Generate pastable output (ASCII, no colors).
    #[arg(short = 'p', long)]
    pub pastable: bool,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::node::OrphanCommand;
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
