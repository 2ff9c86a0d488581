//! `resource-group` (`rg`) and `volume-group` (`vg`): templates of resource definitions,
//! `spawn-resources`, and their lists.

use ferrite_client::{ListFilter, NewResourceGroup, NewVolumeGroup};
use ferrite_types::rest::{
    AutoSelectFilter, ResourceGroup, ResourceGroupModify, ResourceGroupSpawn, VolumeGroup,
    VolumeGroupModify,
};

use super::{
    Ctx, Failure, Outcome, emit, prop_cells, property_change, python_bool, python_list,
    select_filter, show_prop_columns, with_prop_columns,
};
use crate::args::resource_group::{
    ResourceGroupCommand, ResourceGroupCreate, ResourceGroupList, Spawn, VolumeGroupCommand,
    VolumeGroupList,
};
use crate::output::{Exit, Style};
use crate::table::{Cell, Column, Table};

pub fn run(ctx: &Ctx, command: ResourceGroupCommand) -> Outcome {
    match command {
        ResourceGroupCommand::Create(create) => {
            let group = new_group(&create)?;
            ctx.one(ctx.client.create_resource_group(&group))
        }
        ResourceGroupCommand::Modify(modify) => {
            let filter = select_filter(
                modify.place_count,
                &modify.placement,
                modify.providers.as_ref(),
            )?;
            ctx.one(ctx.client.modify_resource_group(
                &modify.name,
                &ResourceGroupModify {
                    description: modify.description.clone(),
                    select_filter: Some(filter),
                    peer_slots: modify.peer_slots,
                    ..Default::default()
                },
            ))
        }
        ResourceGroupCommand::List(list) => {
            let groups = ctx.client.resource_groups(&ListFilter {
                resource_groups: list.resource_groups.clone(),
                props: list.props.clone(),
                ..Default::default()
            })?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&groups.raw));
            }
            // The VlmNrs column needs each group's volume groups, one call per group as the
            // `linstor` client makes them.
            let mut volume_groups = Vec::with_capacity(groups.items.len());
            for group in &groups.items {
                volume_groups.push(ctx.client.volume_groups(&group.name)?.items);
            }
            emit(&render_groups(
                &groups.items,
                &volume_groups,
                &list,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        ResourceGroupCommand::Delete(group) => {
            ctx.one(ctx.client.delete_resource_group(&group.name))
        }
        ResourceGroupCommand::Adjust(args) => super::physical_storage::adjust(ctx, &args),
        ResourceGroupCommand::SpawnResources(spawn) => {
            let body = spawn_body(&spawn)?;
            ctx.one(
                ctx.client
                    .spawn_resources(&spawn.resource_group_name, &body),
            )
        }
        ResourceGroupCommand::SetProperty(set) => {
            let change = property_change(&set.property);
            ctx.one(ctx.client.modify_resource_group(
                &set.name,
                &ResourceGroupModify {
                    override_props: change.override_props,
                    delete_props: change.delete_props,
                    ..Default::default()
                },
            ))
        }
        ResourceGroupCommand::ListProperties(list) => {
            let groups = ctx.client.resource_groups(&ListFilter {
                resource_groups: vec![list.name.clone()],
                ..Default::default()
            })?;
            let group = groups
                .items
                .iter()
                .find(|g| g.name.eq_ignore_ascii_case(&list.name));
            Ok(ctx.properties(group.map(|g| &g.props), list.table.pastable))
        }
        ResourceGroupCommand::QuerySizeInfo(query) => {
            super::resource_group_size::query_size_info(ctx, &query)
        }
        ResourceGroupCommand::QueryMaxVolumeSize(query) => {
            super::resource_group_size::query_max_volume_size(ctx, &query)
        }
    }
}

pub fn new_group(create: &ResourceGroupCreate) -> Result<NewResourceGroup, Failure> {
    Ok(NewResourceGroup {
        name: create.name.clone(),
        description: create.description.clone(),
        select_filter: select_filter(
            create.place_count,
            &create.placement,
            create.providers.as_ref(),
        )?,
        peer_slots: create.peer_slots,
    })
}

pub fn spawn_body(spawn: &Spawn) -> Result<ResourceGroupSpawn, Failure> {
    let filter = select_filter(
        spawn.place_count,
        &spawn.placement,
        spawn.providers.as_ref(),
    )?;
    let (name, external) = match &spawn.external_name {
        Some(external) => (String::new(), Some(external.clone())),
        None => (spawn.resource_definition_name.clone(), None),
    };
    Ok(ResourceGroupSpawn {
        resource_definition_name: name,
        resource_definition_external_name: external,
        volume_sizes: spawn.volume_sizes.iter().map(|s| s.0 as i64).collect(),
        select_filter: Some(filter),
        partial: spawn.partial,
        definitions_only: spawn.definition_only,
        peer_slots: spawn.peer_slots,
        resource_definition_props: Default::default(),
    })
}

/// The SelectFilter cell: one line per setting, as `linstor` prints it.
pub fn describe_filter(filter: &AutoSelectFilter) -> String {
    let mut lines = Vec::new();
    if let Some(count) = filter.place_count.filter(|c| *c != 0) {
        lines.push(format!("PlaceCount: {count}"));
    }
    let pools = filter.storage_pools();
    if !pools.is_empty() {
        lines.push(format!("StoragePool(s): {}", pools.join(", ")));
    }
    if let Some(remaining) = filter.diskless_on_remaining {
        lines.push(format!("DisklessOnRemaining: {}", python_bool(remaining)));
    }
    if let Some(list) = filter.not_place_with_rsc.as_ref().filter(|l| !l.is_empty()) {
        lines.push(format!("NotPlaceWithRsc: {}", python_list(list)));
    }
    if let Some(regex) = filter
        .not_place_with_rsc_regex
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        lines.push(format!("NotPlaceWithRscRegex: {regex}"));
    }
    if let Some(list) = filter.replicas_on_same.as_ref().filter(|l| !l.is_empty()) {
        lines.push(format!("ReplicasOnSame: {}", python_list(list)));
    }
    if let Some(list) = filter
        .replicas_on_different
        .as_ref()
        .filter(|l| !l.is_empty())
    {
        lines.push(format!("ReplicasOnDifferent: {}", python_list(list)));
    }
    if let Some(map) = filter
        .x_replicas_on_different_map
        .as_ref()
        .filter(|m| !m.is_empty())
    {
        let entries: Vec<String> = map.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
        lines.push(format!("XReplicasOnDifferent: {{{}}}", entries.join(", ")));
    }
    if let Some(list) = filter.layer_stack.as_ref().filter(|l| !l.is_empty()) {
        lines.push(format!("LayerStack: {}", python_list(list)));
    }
    if let Some(list) = filter.provider_list.as_ref().filter(|l| !l.is_empty()) {
        lines.push(format!("ProviderList: {}", python_list(list)));
    }
    // Not shown by `linstor`, which cannot set it.
    if let Some(list) = filter.node_name_list.as_ref().filter(|l| !l.is_empty()) {
        lines.push(format!("NodeList: {}", python_list(list)));
    }
    lines.join("\n")
}

pub fn render_groups(
    groups: &[ResourceGroup],
    volume_groups: &[Vec<VolumeGroup>],
    list: &ResourceGroupList,
    style: &Style,
) -> String {
    let props = show_prop_columns(&list.show_props);
    let mut table = Table::new(with_prop_columns(
        vec![
            Column::new("ResourceGroup"),
            Column::new("SelectFilter"),
            Column::new("VlmNrs"),
            Column::new("Description"),
        ],
        &props,
    ));
    table.group_by(&list.table.groupby);
    for (group, volumes) in groups.iter().zip(volume_groups) {
        let numbers: Vec<String> = volumes
            .iter()
            .filter_map(|v| v.volume_number)
            .map(|n| n.to_string())
            .collect();
        let mut row: Vec<Cell> = vec![
            group.name.clone().into(),
            describe_filter(&group.select_filter).into(),
            numbers.join(",").into(),
            group.description.clone().unwrap_or_default().into(),
        ];
        row.extend(prop_cells(&group.props, &props));
        table.row(row);
    }
    table.render(style)
}

pub fn run_volume_group(ctx: &Ctx, command: VolumeGroupCommand) -> Outcome {
    match command {
        VolumeGroupCommand::Create(create) => ctx.one(ctx.client.create_volume_group(
            &create.name,
            &NewVolumeGroup {
                volume_number: create.vlmnr,
                gross: create.gross,
            },
        )),
        VolumeGroupCommand::List(list) => {
            let groups = ctx.client.volume_groups(&list.name)?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&groups.raw));
            }
            emit(&render_volume_groups(
                &groups.items,
                &list,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        VolumeGroupCommand::Delete(group) => {
            ctx.one(ctx.client.delete_volume_group(&group.name, group.volume_nr))
        }
        VolumeGroupCommand::SetProperty(set) => {
            let change = property_change(&set.property);
            ctx.one(ctx.client.modify_volume_group(
                &set.name,
                set.volume_nr,
                &VolumeGroupModify {
                    override_props: change.override_props,
                    delete_props: change.delete_props,
                    ..Default::default()
                },
            ))
        }
        VolumeGroupCommand::ListProperties(list) => {
            let group = ctx.client.volume_group(&list.name, list.volume_nr)?;
            Ok(ctx.properties(Some(&group.items.props), list.table.pastable))
        }
    }
}

pub fn render_volume_groups(
    groups: &[VolumeGroup],
    list: &VolumeGroupList,
    style: &Style,
) -> String {
    let props = show_prop_columns(&list.show_props);
    let mut table = Table::new(with_prop_columns(
        vec![Column::new("VolumeNr"), Column::new("Flags")],
        &props,
    ));
    table.group_by(&list.table.groupby);
    for group in groups {
        let mut row: Vec<Cell> = vec![
            group
                .volume_number
                .map(|n| n.to_string())
                .unwrap_or_default()
                .into(),
            group.flags.join(", ").into(),
        ];
        row.extend(prop_cells(&group.props, &props));
        table.row(row);
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::args::{PlaceCount, PlacementOpts, SizeKib, TableOpts};

    const PLAIN: Style = Style {
        utf8: false,
        color: false,
    };

    #[test]
    fn group_list_as_in_the_tutorial() {
        let groups: Vec<ResourceGroup> = serde_json::from_value(serde_json::json!([
            {"name": "DfltRscGrp", "select_filter": {}},
            {"name": "my_ssd_group", "select_filter": {"place_count": 2, "storage_pool_list": ["pool_ssd"]}}
        ]))
        .unwrap();
        let volumes = vec![
            vec![],
            vec![VolumeGroup {
                volume_number: Some(0),
                ..Default::default()
            }],
        ];
        let list = ResourceGroupList {
            table: TableOpts::default(),
            resource_groups: vec![],
            props: vec![],
            show_props: vec![],
        };
        assert_eq!(
            render_groups(&groups, &volumes, &list, &PLAIN),
            "\
+-----------------------------------------------------------------+
| ResourceGroup | SelectFilter             | VlmNrs | Description |
|=================================================================|
| DfltRscGrp    |                          |        |             |
|-----------------------------------------------------------------|
| my_ssd_group  | PlaceCount: 2            | 0      |             |
|               | StoragePool(s): pool_ssd |        |             |
+-----------------------------------------------------------------+
"
        );
    }

    #[test]
    fn volume_group_list_as_in_the_tutorial() {
        let list = VolumeGroupList {
            table: TableOpts::default(),
            show_props: vec![],
            name: "my_ssd_group".into(),
        };
        let groups = vec![VolumeGroup {
            volume_number: Some(0),
            ..Default::default()
        }];
        assert_eq!(
            render_volume_groups(&groups, &list, &PLAIN),
            "\
+------------------+
| VolumeNr | Flags |
|==================|
| 0        |       |
+------------------+
"
        );
    }

    #[test]
    fn every_filter_setting_is_described() {
        let filter = AutoSelectFilter {
            place_count: Some(3),
            storage_pool_list: Some(vec!["a".into(), "b".into()]),
            diskless_on_remaining: Some(false),
            not_place_with_rsc: Some(vec!["r1".into()]),
            not_place_with_rsc_regex: Some("db.*".into()),
            replicas_on_same: Some(vec!["Aux/rack".into()]),
            replicas_on_different: Some(vec!["Aux/dc".into()]),
            x_replicas_on_different_map: Some(BTreeMap::from([("Aux/room".to_string(), 2)])),
            layer_stack: Some(vec!["MIRROR".into(), "STORAGE".into()]),
            provider_list: Some(vec!["FILE_THIN".into()]),
            node_name_list: Some(vec!["alpha".into()]),
            ..Default::default()
        };
        assert_eq!(
            describe_filter(&filter),
            "PlaceCount: 3\nStoragePool(s): a, b\nDisklessOnRemaining: False\n\
             NotPlaceWithRsc: ['r1']\nNotPlaceWithRscRegex: db.*\nReplicasOnSame: ['Aux/rack']\n\
             ReplicasOnDifferent: ['Aux/dc']\nXReplicasOnDifferent: {'Aux/room': 2}\n\
             LayerStack: ['MIRROR', 'STORAGE']\nProviderList: ['FILE_THIN']\nNodeList: ['alpha']"
        );
        assert_eq!(describe_filter(&AutoSelectFilter::default()), "");
    }

    #[test]
    fn spawn_as_the_linstor_cli_sends_it() {
        let spawn = Spawn {
            partial: false,
            definition_only: false,
            external_name: None,
            peer_slots: None,
            place_count: None,
            placement: PlacementOpts::default(),
            providers: None,
            resource_group_name: "my_ssd_group".into(),
            resource_definition_name: "my_ssd_res".into(),
            volume_sizes: vec![SizeKib(20 << 20)],
        };
        assert_eq!(
            serde_json::to_value(spawn_body(&spawn).unwrap()).unwrap(),
            serde_json::json!({"resource_definition_name": "my_ssd_res", "volume_sizes": [20971520],
                "partial": false, "definitions_only": false, "select_filter": {}})
        );
        let spawn = Spawn {
            external_name: Some("Ext Name".into()),
            place_count: Some(PlaceCount::Total(3)),
            ..spawn
        };
        let body = serde_json::to_value(spawn_body(&spawn).unwrap()).unwrap();
        assert_eq!(body["resource_definition_name"], "");
        assert_eq!(body["resource_definition_external_name"], "Ext Name");
        assert_eq!(body["select_filter"]["place_count"], 3);
    }
}
