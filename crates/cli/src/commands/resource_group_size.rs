//! `resource-group query-size-info` (`qsi`) and `query-max-volume-size` (`qmvs`): how large a
//! volume a group can place, with the `linstor` client's columns.

use clap::Args;
use ferrite_types::size::format_kib;

use super::{Ctx, Outcome, emit, select_filter};
use crate::args::{
    PlaceCount, PlacementOpts, ProviderList, TableOpts, parse_place_count, parse_provider_list,
};
use crate::output::{Exit, format_replies};
use crate::table::{Column, Table};

#[derive(Debug, Args)]
pub struct QuerySizeInfo {
    /// The resource group.
    pub name: String,
    /// Number of diskful replicas, instead of the group's.
    #[arg(long, value_name = "REPLICA_COUNT", value_parser = parse_place_count)]
    pub place_count: Option<PlaceCount>,
    #[command(flatten)]
    pub placement: PlacementOpts,
    /// Comma separated providers the replicas may use, instead of the group's.
    #[arg(long, value_parser = parse_provider_list)]
    pub providers: Option<ProviderList>,
    #[command(flatten)]
    pub table: TableOpts,
}

#[derive(Debug, Args)]
pub struct QueryMaxVolumeSize {
    /// The resource group.
    pub name: String,
    #[command(flatten)]
    pub table: TableOpts,
}

fn size(kib: i64) -> String {
    format_kib(u64::try_from(kib).unwrap_or(0))
}

pub fn query_size_info(ctx: &Ctx, query: &QuerySizeInfo) -> Outcome {
    let filter = select_filter(
        query.place_count,
        &query.placement,
        query.providers.as_ref(),
    )?;
    let answer = ctx.client.query_size_info(&query.name, &filter)?;
    if ctx.machine_readable {
        return Ok(ctx.listing_json(&answer.raw));
    }
    let space = &answer.items.space_info;
    let mut table = Table::new(vec![
        Column::new("MaxVolumeSize"),
        Column::new("AvailableSize"),
        Column::new("Capacity"),
        Column::new("Next Spawn Result"),
    ]);
    let next: Vec<String> = space
        .next_spawn_result
        .iter()
        .map(|r| format!("{} on {}", r.stor_pool_name, r.node_name))
        .collect();
    table.row(vec![
        size(space.max_vlm_size_in_kib).into(),
        size(space.available_size_in_kib).into(),
        size(space.capacity_in_kib).into(),
        next.join("\n").into(),
    ]);
    emit(&table.render(&ctx.table_style(query.table.pastable)));
    if !answer.items.reports.is_empty() {
        emit(&format_replies(&answer.items.reports, &ctx.style));
    }
    Ok(Exit::Ok)
}

pub fn query_max_volume_size(ctx: &Ctx, query: &QueryMaxVolumeSize) -> Outcome {
    let answer = ctx.client.query_max_volume_size(&query.name)?;
    if ctx.machine_readable {
        return Ok(ctx.listing_json(&answer.raw));
    }
    let mut table = Table::new(vec![
        Column::new("StoragePool"),
        Column::new("MaxVolumeSize"),
        Column::new("Provisioning"),
        Column::new("Nodes"),
    ]);
    for candidate in &answer.items.candidates {
        table.row(vec![
            candidate.storage_pool.as_str().into(),
            size(candidate.max_volume_size_kib).into(),
            if candidate.all_thin { "Thin" } else { "Thick" }.into(),
            candidate.node_names.join(", ").into(),
        ]);
    }
    emit(&table.render(&ctx.table_style(query.table.pastable)));
    Ok(Exit::Ok)
}
