//! `physical-storage` (`ps`): the nodes' unused disks, and `create-device-pool`; plus the
//! arguments of `node evacuate`, `node restore`, `resource activate|deactivate` and
//! `resource-group adjust`, which act on placement the same way.

use clap::{Args, Subcommand};
use ferrite_types::ProviderKind;
use ferrite_types::rest::{
    NodeEvacuate, NodeRestore, PhysicalStorageCreate, PhysicalStorageStoragePoolCreate,
    ResourceGroupAdjust,
};
use ferrite_types::size::format_kib;

use super::{Ctx, Failure, Outcome, emit};
use crate::args::TableOpts;
use crate::output::Exit;
use crate::table::{Column, Table};

#[derive(Debug, Subcommand)]
pub enum PhysicalStorageCommand {
    /// List the unused disks of every online node (no partitions, holders, file system or
    /// mount point; at least 1 GiB), grouped by size and rotation.
    #[command(visible_alias = "l")]
    List(TableOpts),
    /// Make a volume group, thin pool or zpool of unused disks of a node, and optionally a
    /// storage pool on it.
    #[command(visible_alias = "cdp")]
    CreateDevicePool(CreateDevicePool),
}

#[derive(Debug, Args)]
pub struct CreateDevicePool {
    /// LVM, LVMTHIN, ZFS or ZFSTHIN.
    pub provider_kind: String,
    /// The node whose disks to use.
    pub node_name: String,
    /// The disks, e.g. /dev/sdb.
    #[arg(required = true, num_args = 1..)]
    pub device_paths: Vec<String>,
    /// The volume group (LVM), thin pool (LVMTHIN, in volume group linstor_<name>) or zpool.
    #[arg(long)]
    pub pool_name: Option<String>,
    /// Also create a storage pool of this name on it.
    #[arg(long)]
    pub storage_pool: Option<String>,
    /// Accepted for compatibility; VDO is refused.
    #[arg(long)]
    pub vdo_enable: bool,
    /// Accepted for compatibility; SED is refused.
    #[arg(long)]
    pub sed: bool,
}

#[derive(Debug, Args)]
pub struct NodeEvacuateArgs {
    /// The node to evacuate.
    pub node_name: String,
    /// Nodes the resources may go to (default: any).
    #[arg(long, num_args = 1..)]
    pub target: Vec<String>,
    /// Nodes the resources may not go to.
    #[arg(long, num_args = 1..)]
    pub do_not_target: Vec<String>,
    /// Accepted for compatibility; the call always waits for the placement.
    #[arg(long = "async")]
    pub async_: bool,
}

#[derive(Debug, Args)]
pub struct NodeRestoreArgs {
    /// The evacuated node.
    pub node_name: String,
    /// Not supported: refused by the controller.
    #[arg(long)]
    pub delete_resources: bool,
    /// Not supported: refused by the controller.
    #[arg(long)]
    pub delete_snapshots: bool,
}

#[derive(Debug, Args)]
pub struct ResourceActivateArgs {
    /// The node.
    pub node_name: String,
    /// The resource.
    pub resource_name: String,
}

#[derive(Debug, Args)]
pub struct ResourceGroupAdjustArgs {
    /// The resource group; without one, every group.
    pub resource_group: Option<String>,
    /// Override the group's place count.
    #[arg(long)]
    pub place_count: Option<i32>,
}

/// The provider kinds `create-device-pool` takes, as `linstor` spells them.
fn provider_kind(text: &str) -> Result<ProviderKind, Failure> {
    match text.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
        "LVM" => Ok(ProviderKind::Lvm),
        "LVMTHIN" => Ok(ProviderKind::LvmThin),
        "ZFS" => Ok(ProviderKind::Zfs),
        "ZFSTHIN" => Ok(ProviderKind::ZfsThin),
        _ => Err(Failure::usage(format!(
            "invalid provider kind '{text}': choose LVM, LVMTHIN, ZFS or ZFSTHIN"
        ))),
    }
}

pub fn run(ctx: &Ctx, command: PhysicalStorageCommand) -> Outcome {
    match command {
        PhysicalStorageCommand::List(opts) => {
            let storage = ctx.client.physical_storage()?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&storage.raw));
            }
            let mut table = Table::new(vec![
                Column::new("Size").right(),
                Column::new("Rotational"),
                Column::new("Nodes"),
            ]);
            for entry in &storage.items {
                let nodes: Vec<String> = entry
                    .nodes
                    .iter()
                    .map(|(node, devices)| {
                        let devices: Vec<String> = devices
                            .iter()
                            .map(|d| match &d.model {
                                Some(model) => format!("{}({model})", d.device),
                                None => d.device.clone(),
                            })
                            .collect();
                        format!("{node}[{}]", devices.join(","))
                    })
                    .collect();
                table.row(vec![
                    format_kib(entry.size.max(0) as u64 / 1024).into(),
                    if entry.rotational { "True" } else { "False" }.into(),
                    nodes.join("\n").into(),
                ]);
            }
            emit(&table.render(&ctx.table_style(opts.pastable)));
            Ok(Exit::Ok)
        }
        PhysicalStorageCommand::CreateDevicePool(create) => {
            let body = PhysicalStorageCreate {
                provider_kind: provider_kind(&create.provider_kind)?,
                device_paths: create.device_paths.clone(),
                raid_level: None,
                pool_name: create.pool_name.clone(),
                vdo_enable: create.vdo_enable.then_some(true),
                vdo_slab_size_kib: None,
                vdo_logical_size_kib: None,
                with_storage_pool: create.storage_pool.as_ref().map(|name| {
                    PhysicalStorageStoragePoolCreate {
                        name: name.clone(),
                        ..Default::default()
                    }
                }),
                sed: create.sed.then_some(true),
                pv_create_arguments: None,
                vg_create_arguments: None,
                lv_create_arguments: None,
                zpool_create_arguments: None,
            };
            ctx.one(ctx.client.create_device_pool(&create.node_name, &body))
        }
    }
}

pub fn evacuate(ctx: &Ctx, args: &NodeEvacuateArgs) -> Outcome {
    let body = NodeEvacuate {
        target: (!args.target.is_empty()).then(|| args.target.clone()),
        do_not_target: (!args.do_not_target.is_empty()).then(|| args.do_not_target.clone()),
    };
    ctx.one(ctx.client.evacuate_node(&args.node_name, &body))
}

pub fn restore(ctx: &Ctx, args: &NodeRestoreArgs) -> Outcome {
    let body = NodeRestore {
        delete_resources: args.delete_resources.then_some(true),
        delete_snapshots: args.delete_snapshots.then_some(true),
    };
    ctx.one(ctx.client.restore_node(&args.node_name, &body))
}

pub fn set_active(ctx: &Ctx, args: &ResourceActivateArgs, active: bool) -> Outcome {
    ctx.one(
        ctx.client
            .set_resource_active(&args.resource_name, &args.node_name, active),
    )
}

pub fn adjust(ctx: &Ctx, args: &ResourceGroupAdjustArgs) -> Outcome {
    let body = ResourceGroupAdjust {
        select_filter: args
            .place_count
            .map(|count| ferrite_types::rest::AutoSelectFilter {
                place_count: Some(count),
                ..Default::default()
            }),
        ..Default::default()
    };
    ctx.one(
        ctx.client
            .adjust_resource_groups(args.resource_group.as_deref(), &body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_kinds_are_spelled_as_linstor_spells_them() {
        assert_eq!(provider_kind("lvmthin").unwrap(), ProviderKind::LvmThin);
        assert_eq!(provider_kind("LVM_THIN").unwrap(), ProviderKind::LvmThin);
        assert_eq!(provider_kind("zfs").unwrap(), ProviderKind::Zfs);
        assert!(provider_kind("file").is_err());
    }
}
