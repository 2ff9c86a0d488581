//! `snapshot` (`s`): take, list, delete, roll back and restore snapshots; and
//! `resource-definition clone`. The command's arguments live here too, beside what runs them.

use clap::{Args, Subcommand};
use ferrite_types::rest::Snapshot;
use ferrite_types::size::format_kib;

use super::{Ctx, Outcome, emit};
use crate::args::TableOpts;
use crate::output::{Color, Exit, Style};
use crate::table::{Cell, Column, Table};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of a resource definition (on every node with its data, or the nodes
    /// named).
    #[command(visible_alias = "c")]
    Create(SnapshotCreate),
    /// List snapshots.
    #[command(visible_alias = "l")]
    List(SnapshotList),
    /// Delete a snapshot (on every node, or the nodes named).
    #[command(visible_alias = "d")]
    Delete(SnapshotDelete),
    /// Roll a resource back to a snapshot: what was written since is lost.
    #[command(visible_alias = "rb")]
    Rollback(SnapshotRollback),
    /// Restore a snapshot's resources into a new resource definition.
    #[command(subcommand, visible_alias = "r")]
    Resource(SnapshotResourceCommand),
    /// Restore a snapshot's volume definitions into a new resource definition.
    #[command(subcommand, visible_alias = "vd")]
    VolumeDefinition(SnapshotVolumeDefinitionCommand),
}

#[derive(Debug, Args)]
pub struct SnapshotCreate {
    /// Nodes to take it on (optional), then the resource definition and the snapshot's name.
    #[arg(num_args = 2.., value_name = "[NODE...] RESOURCE_DEFINITION SNAPSHOT")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotList {
    /// Only these resource definitions.
    #[arg(short = 'r', long, num_args = 1.., value_name = "RESOURCE")]
    pub resources: Vec<String>,
    /// Only snapshots on these nodes.
    #[arg(short = 'n', long, num_args = 1.., value_name = "NODE")]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub table: TableOpts,
}

#[derive(Debug, Args)]
pub struct SnapshotDelete {
    pub resource_definition: String,
    pub snapshot: String,
    /// Only on these nodes.
    #[arg(short = 'n', long, num_args = 1.., value_name = "NODE")]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotRollback {
    pub resource_definition: String,
    pub snapshot: String,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotResourceCommand {
    /// Restore a snapshot's resources (and missing volume definitions) into a definition
    /// without resources, on every node of the snapshot or the nodes named.
    #[command(visible_alias = "rst")]
    Restore(SnapshotRestore),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotVolumeDefinitionCommand {
    /// Restore a snapshot's volume definitions into a definition without them.
    #[command(visible_alias = "rst")]
    Restore(SnapshotRestore),
}

#[derive(Debug, Args)]
pub struct SnapshotRestore {
    /// Nodes to restore on (resource restore only).
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
    #[arg(long)]
    pub from_resource: String,
    #[arg(long)]
    pub from_snapshot: String,
    #[arg(long)]
    pub to_resource: String,
}

/// `resource-definition clone`.
#[derive(Debug, Args)]
pub struct ResourceDefinitionClone {
    /// The resource definition to clone.
    pub source_resource: String,
    /// The clone's name.
    pub clone_name: String,
    /// Answer once the clone is started, without waiting for it to complete.
    #[arg(long)]
    pub no_wait: bool,
}

pub fn run(ctx: &Ctx, command: SnapshotCommand) -> Outcome {
    match command {
        SnapshotCommand::Create(create) => {
            let mut args = create.args;
            let snapshot = args.pop().unwrap_or_default();
            let resource = args.pop().unwrap_or_default();
            ctx.one(ctx.client.create_snapshot(&resource, &snapshot, &args))
        }
        SnapshotCommand::List(list) => {
            let snapshots = ctx.client.snapshots(&list.nodes, &list.resources)?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&snapshots.raw));
            }
            emit(&render_snapshots(
                &snapshots.items,
                &list.table,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        SnapshotCommand::Delete(delete) => ctx.one(ctx.client.delete_snapshot(
            &delete.resource_definition,
            &delete.snapshot,
            &delete.nodes,
        )),
        SnapshotCommand::Rollback(rollback) => ctx.one(
            ctx.client
                .rollback_snapshot(&rollback.resource_definition, &rollback.snapshot),
        ),
        SnapshotCommand::Resource(SnapshotResourceCommand::Restore(restore)) => {
            ctx.one(ctx.client.restore_snapshot(
                &restore.from_resource,
                &restore.from_snapshot,
                &restore.to_resource,
                &restore.nodes,
                false,
            ))
        }
        SnapshotCommand::VolumeDefinition(SnapshotVolumeDefinitionCommand::Restore(restore)) => ctx
            .one(ctx.client.restore_snapshot(
                &restore.from_resource,
                &restore.from_snapshot,
                &restore.to_resource,
                &[],
                true,
            )),
    }
}

/// `resource-definition clone`: the clone's answer, then (unless `--no-wait`) its status until
/// it is complete or failed.
pub fn clone(ctx: &Ctx, clone: ResourceDefinitionClone) -> Outcome {
    let answer = ctx
        .client
        .clone_resource_definition(&clone.source_resource, &clone.clone_name)?;
    let exit = ctx.answers(std::slice::from_ref(&answer));
    if clone.no_wait || answer.has_error() {
        return Ok(exit);
    }
    loop {
        let status = ctx
            .client
            .clone_status(&clone.source_resource, &clone.clone_name)?;
        match status.as_str() {
            "COMPLETE" => {
                if !ctx.machine_readable {
                    emit(&format!(
                        "Resource definition '{}' cloned to '{}'.\n",
                        clone.source_resource, clone.clone_name
                    ));
                }
                return Ok(exit);
            }
            "FAILED" => {
                eprintln!(
                    "Error: cloning '{}' to '{}' failed; 'ferrite volume list -r {}' shows why.",
                    clone.source_resource, clone.clone_name, clone.clone_name
                );
                return Ok(Exit::Api);
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    }
}

/// LINSTOR's state of a snapshot definition: from its flags.
fn state(snapshot: &Snapshot) -> (String, Color) {
    let has = |flag: &str| snapshot.flags.iter().any(|f| f == flag);
    if has("DELETE") {
        ("DELETING".to_string(), Color::Yellow)
    } else if has("FAILED_DEPLOYMENT") {
        ("Failed".to_string(), Color::Red)
    } else if has("SUCCESSFUL") {
        ("Successful".to_string(), Color::Green)
    } else {
        ("Incomplete".to_string(), Color::Yellow)
    }
}

/// The table of `snapshot list`: LINSTOR's columns.
pub fn render_snapshots(snapshots: &[Snapshot], options: &TableOpts, style: &Style) -> String {
    let mut table = Table::new(vec![
        Column::new("ResourceName"),
        Column::new("SnapshotName"),
        Column::new("NodeNames"),
        Column::new("Volumes"),
        Column::new("CreatedOn"),
        Column::new("State"),
    ]);
    table.group_by(&options.groupby);
    for snapshot in snapshots {
        let volumes: Vec<String> = snapshot
            .volume_definitions
            .iter()
            .map(|v| {
                format!(
                    "{}: {}",
                    v.volume_number,
                    format_kib(v.size_kib.max(0) as u64)
                )
            })
            .collect();
        let created = snapshot
            .snapshots
            .first()
            .and_then(|s| chrono::DateTime::from_timestamp_millis(s.create_timestamp))
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let (state, color) = state(snapshot);
        table.row(vec![
            snapshot.resource_name.clone().into(),
            snapshot.name.clone().into(),
            snapshot.nodes.join(", ").into(),
            volumes.join(", ").into(),
            created.into(),
            Cell::colored(state, Some(color)),
        ]);
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_types::rest::{SnapshotNode, SnapshotVolumeDefinition};

    #[test]
    fn the_list_has_linstors_columns_and_states() {
        let snapshot = Snapshot {
            name: "snap1".into(),
            resource_name: "web".into(),
            nodes: vec!["node1".into(), "node2".into()],
            flags: vec!["SUCCESSFUL".into()],
            volume_definitions: vec![SnapshotVolumeDefinition {
                volume_number: 0,
                size_kib: 20 << 20,
                ..Default::default()
            }],
            snapshots: vec![SnapshotNode {
                create_timestamp: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let deleting = Snapshot {
            name: "old".into(),
            flags: vec!["DELETE".into()],
            ..snapshot.clone()
        };
        let text = render_snapshots(
            &[snapshot, deleting],
            &TableOpts::default(),
            &Style {
                utf8: false,
                color: false,
            },
        );
        for expected in [
            "ResourceName",
            "SnapshotName",
            "NodeNames",
            "Volumes",
            "CreatedOn",
            "State",
            "node1, node2",
            "0: 20 GiB",
            "1970-01-01 00:00:00",
            "Successful",
            "DELETING",
        ] {
            assert!(text.contains(expected), "{expected} missing in\n{text}");
        }
    }
}
