//! `resource-definition` (`rd`) and `volume-definition` (`vd`): the cluster-wide description of
//! a resource and its volumes, `auto-place`, and their lists.

use ferrite_client::{ListFilter, NewResourceDefinition, NewVolumeDefinition};
use ferrite_types::rest::{
    AutoPlaceRequest, ResourceDefinition, ResourceDefinitionModify, VolumeDefinition,
    VolumeDefinitionModify,
};
use ferrite_types::size::format_kib;

use super::{
    Ctx, Outcome, diskless_on_remaining, emit, prop_cells, property_change, select_filter,
    show_prop_columns, with_prop_columns,
};
use crate::args::resource_definition::{
    AutoPlace, ResourceDefinitionCommand, ResourceDefinitionList, VolumeDefinitionCommand,
    VolumeDefinitionList,
};
use crate::output::{Color, Exit, Style};
use crate::table::{Cell, Column, Table};

pub fn run(ctx: &Ctx, command: ResourceDefinitionCommand) -> Outcome {
    match command {
        ResourceDefinitionCommand::Create(create) => {
            let definition = NewResourceDefinition {
                name: create.name.clone().unwrap_or_default(),
                external_name: create.external_name.clone(),
                resource_group: create.resource_group.clone(),
                layer_list: create.layer_list.map(|l| l.0).unwrap_or_default(),
                port: create.port.map(i32::from),
                peer_slots: create.peer_slots,
            };
            ctx.one(ctx.client.create_resource_definition(&definition))
        }
        ResourceDefinitionCommand::AutoPlace(place) => {
            let body = autoplace_body(&place)?;
            ctx.one(ctx.client.autoplace(&place.resource_definition_name, &body))
        }
        ResourceDefinitionCommand::List(list) => {
            let definitions = ctx.client.resource_definitions(
                &ListFilter {
                    resources: list.resource_definitions.clone(),
                    props: list.props.clone(),
                    ..Default::default()
                },
                false,
            )?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&definitions.raw));
            }
            emit(&render_definitions(
                &definitions.items,
                &list,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        ResourceDefinitionCommand::Modify(modify) => {
            ctx.one(ctx.client.modify_resource_definition(
                &modify.name,
                &ResourceDefinitionModify {
                    drbd_peer_slots: modify.peer_slots,
                    drbd_port: modify.port.map(i32::from),
                    resource_group: modify.resource_group.clone(),
                    ..Default::default()
                },
            ))
        }
        ResourceDefinitionCommand::Delete(delete) => ctx.run_all(delete.name, |client, name| {
            client.delete_resource_definition(&name)
        }),
        ResourceDefinitionCommand::SetProperty(set) => {
            let change = property_change(&set.property);
            ctx.one(ctx.client.modify_resource_definition(
                &set.name,
                &ResourceDefinitionModify {
                    override_props: change.override_props,
                    delete_props: change.delete_props,
                    ..Default::default()
                },
            ))
        }
        ResourceDefinitionCommand::Clone(clone) => super::snapshot::clone(ctx, clone),
        ResourceDefinitionCommand::ListProperties(list) => {
            let definitions = ctx.client.resource_definitions(
                &ListFilter {
                    resources: vec![list.name.clone()],
                    ..Default::default()
                },
                false,
            )?;
            let definition = definitions
                .items
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(&list.name));
            Ok(ctx.properties(definition.map(|d| &d.props), list.table.pastable))
        }
        ResourceDefinitionCommand::WaitSync(wait) => super::wait_sync::run(ctx, &wait),
    }
}

pub fn autoplace_body(place: &AutoPlace) -> Result<AutoPlaceRequest, super::Failure> {
    let mut filter = select_filter(
        place.place_count,
        &place.placement,
        place.providers.as_ref(),
    )?;
    if place.drbd_diskless {
        filter.diskless_type = Some("DRBD_DISKLESS".into());
    }
    Ok(AutoPlaceRequest {
        diskless_on_remaining: diskless_on_remaining(&place.placement),
        select_filter: filter,
        layer_list: place.placement.layer_list.clone().map(|l| l.0),
    })
}

/// The State column of a resource definition.
fn definition_state(definition: &ResourceDefinition) -> (&'static str, Color) {
    let has = |flag: &str| definition.flags.iter().any(|f| f == flag);
    if has("DELETE") || has("FAILED") {
        ("DELETE", Color::Red)
    } else if has("CLONING") || has("RESTORE_TARGET") {
        ("CLONING", Color::Yellow)
    } else {
        ("ok", Color::DarkGreen)
    }
}

pub fn render_definitions(
    definitions: &[ResourceDefinition],
    list: &ResourceDefinitionList,
    style: &Style,
) -> String {
    let props = show_prop_columns(&list.show_props);
    let mut columns = vec![Column::new("ResourceName")];
    if list.external_name {
        columns.push(Column::new("External"));
    }
    columns.extend([
        Column::new("ResourceGroup"),
        Column::new("Layers"),
        Column::new("State"),
    ]);
    let mut table = Table::new(with_prop_columns(columns, &props));
    table.group_by(&list.table.groupby);
    for definition in definitions {
        let mut row: Vec<Cell> = vec![definition.name.clone().into()];
        if list.external_name {
            row.push(
                definition
                    .external_name
                    .clone()
                    .unwrap_or_else(|| "-".into())
                    .into(),
            );
        }
        let layers: Vec<String> = definition
            .layer_data
            .iter()
            .map(|l| {
                let engine = l
                    .data
                    .as_ref()
                    .and_then(|d| d.get("engine"))
                    .and_then(|e| e.as_str());
                super::resource::shown_layer(l.layer_type, engine)
            })
            .collect();
        let (state, color) = definition_state(definition);
        row.extend([
            definition
                .resource_group_name
                .clone()
                .unwrap_or_default()
                .into(),
            layers.join(",").into(),
            Cell::colored(state, Some(color)),
        ]);
        row.extend(prop_cells(&definition.props, &props));
        table.row(row);
    }
    table.render(style)
}

pub fn run_volume_definition(ctx: &Ctx, command: VolumeDefinitionCommand) -> Outcome {
    match command {
        VolumeDefinitionCommand::Create(create) => ctx.one(ctx.client.create_volume_definition(
            &create.resource_name,
            &NewVolumeDefinition {
                size_kib: create.size.0 as i64,
                volume_number: create.vlmnr,
                minor_number: create.minor,
                gross: create.gross,
            },
        )),
        VolumeDefinitionCommand::List(list) => {
            let definitions = ctx.client.resource_definitions(
                &ListFilter {
                    resources: list.resource_definitions.clone(),
                    ..Default::default()
                },
                true,
            )?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&definitions.raw));
            }
            emit(&render_volume_definitions(
                &definitions.items,
                &list,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        VolumeDefinitionCommand::SetSize(resize) => ctx.one(
            ctx.client.modify_volume_definition(
                &resize.resource_name,
                resize.volume_nr,
                &VolumeDefinitionModify {
                    size_kib: Some(resize.size.0 as i64),
                    flags: resize
                        .gross
                        .then(|| vec![ferrite_client::endpoints::FLAG_GROSS_SIZE.to_string()]),
                    ..Default::default()
                },
            ),
        ),
        VolumeDefinitionCommand::Delete(delete) => ctx.one(
            ctx.client
                .delete_volume_definition(&delete.resource_name, delete.volume_nr),
        ),
        VolumeDefinitionCommand::SetProperty(set) => {
            let change = property_change(&set.property);
            ctx.one(ctx.client.modify_volume_definition(
                &set.resource_name,
                set.volume_nr,
                &VolumeDefinitionModify {
                    override_props: change.override_props,
                    delete_props: change.delete_props,
                    ..Default::default()
                },
            ))
        }
        VolumeDefinitionCommand::ListProperties(list) => {
            let definition = ctx
                .client
                .volume_definition(&list.resource_name, list.volume_nr)?;
            Ok(ctx.properties(Some(&definition.items.props), list.table.pastable))
        }
    }
}

/// The DRBD minor number of a volume definition, when its DRBD layer has one.
fn minor_number(definition: &VolumeDefinition) -> Option<i64> {
    definition
        .layer_data
        .iter()
        .filter_map(|l| l.data.as_ref())
        .find_map(|data| data.get("minor_number").and_then(|m| m.as_i64()))
}

pub fn render_volume_definitions(
    definitions: &[ResourceDefinition],
    list: &VolumeDefinitionList,
    style: &Style,
) -> String {
    let props = show_prop_columns(&list.show_props);
    let mut columns = vec![Column::new("ResourceName")];
    if list.external_name {
        columns.push(Column::new("External"));
    }
    columns.extend([
        Column::new("VolumeNr"),
        Column::new("VolumeMinor"),
        Column::new("Size"),
        Column::new("Gross"),
        Column::new("State").colored(Color::DarkGreen),
    ]);
    let mut table = Table::new(with_prop_columns(columns, &props));
    table.group_by(&list.table.groupby);
    for definition in definitions {
        for volume in definition.volume_definitions.iter().flatten() {
            let has = |flag: &str| volume.flags.iter().any(|f| f == flag);
            let state = if has("DELETE") {
                Cell::colored("DELETING", Some(Color::Red))
            } else if has("RESIZE") {
                Cell::colored("resizing", Some(Color::DarkPink))
            } else {
                Cell::colored("ok", Some(Color::DarkGreen))
            };
            let mut row: Vec<Cell> = vec![definition.name.clone().into()];
            if list.external_name {
                row.push(
                    definition
                        .external_name
                        .clone()
                        .unwrap_or_else(|| "-".into())
                        .into(),
                );
            }
            row.extend([
                volume
                    .volume_number
                    .map(|n| n.to_string())
                    .unwrap_or_default()
                    .into(),
                minor_number(volume)
                    .map(|m| m.to_string())
                    .unwrap_or_default()
                    .into(),
                format_kib(volume.size_kib.max(0) as u64).into(),
                if has(ferrite_client::endpoints::FLAG_GROSS_SIZE) {
                    "+"
                } else {
                    ""
                }
                .into(),
                state,
            ]);
            row.extend(prop_cells(&volume.props, &props));
            table.row(row);
        }
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{PlaceCount, PlacementOpts, TableOpts};

    const PLAIN: Style = Style {
        utf8: false,
        color: false,
    };

    #[test]
    fn definition_list_as_in_the_tutorial() {
        let definitions: Vec<ResourceDefinition> = serde_json::from_value(serde_json::json!([
            {"name": "my_ssd_res", "resource_group_name": "my_ssd_group",
             "layer_data": [{"type": "DRBD"}, {"type": "STORAGE"}], "flags": [], "props": {}}
        ]))
        .unwrap();
        let list = ResourceDefinitionList {
            table: TableOpts::default(),
            resource_definitions: vec![],
            external_name: false,
            props: vec![],
            show_props: vec![],
        };
        assert_eq!(
            render_definitions(&definitions, &list, &PLAIN),
            "\
+-----------------------------------------------------+
| ResourceName | ResourceGroup | Layers       | State |
|=====================================================|
| my_ssd_res   | my_ssd_group  | DRBD,STORAGE | ok    |
+-----------------------------------------------------+
"
        );
    }

    #[test]
    fn the_layers_name_the_replication_engine() {
        let definitions: Vec<ResourceDefinition> = serde_json::from_value(serde_json::json!([
            {"name": "web", "resource_group_name": "my_ssd_group",
             "layer_data": [{"type": "DRBD", "data": {"engine": "MIRROR", "secret": "x"}},
                            {"type": "STORAGE"}]},
            {"name": "db", "resource_group_name": "my_ssd_group",
             "layer_data": [{"type": "DRBD", "data": {"engine": "DRBD"}}, {"type": "STORAGE"}]},
            {"name": "new", "resource_group_name": "my_ssd_group",
             "layer_data": [{"type": "DRBD", "data": {}}, {"type": "STORAGE"}]}
        ]))
        .unwrap();
        let list = ResourceDefinitionList {
            table: TableOpts::default(),
            resource_definitions: vec![],
            external_name: false,
            props: vec![],
            show_props: vec![],
        };
        let text = render_definitions(&definitions, &list, &PLAIN);
        assert!(
            text.contains("| web          | my_ssd_group  | MIRROR,STORAGE |"),
            "{text}"
        );
        assert!(
            text.contains("| db           | my_ssd_group  | DRBD,STORAGE   |"),
            "{text}"
        );
        assert!(
            text.contains("| new          | my_ssd_group  | DRBD,STORAGE   |"),
            "{text}"
        );
    }

    #[test]
    fn volume_definitions_one_row_per_volume() {
        let definitions: Vec<ResourceDefinition> = serde_json::from_value(serde_json::json!([
            {"name": "r1", "external_name": "Ext", "layer_data": [{"type": "MIRROR"}, {"type": "STORAGE"}],
             "volume_definitions": [
                {"volume_number": 0, "size_kib": 2097152, "flags": [], "props": {},
                 "layer_data": [{"type": "DRBD", "data": {"minor_number": 1000}}]},
                {"volume_number": 1, "size_kib": 1536000, "flags": ["GROSS_SIZE", "RESIZE"], "props": {}, "layer_data": []}
             ]}
        ]))
        .unwrap();
        let list = VolumeDefinitionList {
            table: TableOpts::default(),
            resource_definitions: vec![],
            external_name: true,
            show_props: vec![],
        };
        assert_eq!(
            render_volume_definitions(&definitions, &list, &PLAIN),
            "\
+--------------------------------------------------------------------------------+
| ResourceName | External | VolumeNr | VolumeMinor | Size     | Gross | State    |
|================================================================================|
| r1           | Ext      | 0        | 1000        | 2 GiB    |       | ok       |
| r1           | Ext      | 1        |             | 1.46 GiB | +     | resizing |
+--------------------------------------------------------------------------------+
"
        );
    }

    #[test]
    fn autoplace_as_the_linstor_cli_sends_it() {
        let place = AutoPlace {
            place_count: Some(PlaceCount::Total(2)),
            placement: PlacementOpts::default(),
            providers: None,
            drbd_diskless: false,
            resource_definition_name: "R2".into(),
        };
        assert_eq!(
            serde_json::to_value(autoplace_body(&place).unwrap()).unwrap(),
            serde_json::json!({"select_filter": {"place_count": 2}})
        );
    }
}
