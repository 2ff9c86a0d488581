//! `resource` (`r`) and `volume` (`v`): placing a resource on nodes, toggling its disk, and the
//! two views of `GET /v1/view/resources` (`resource list` and `volume list`).
//!
//! States follow the `linstor` client, with one difference: `linstor` shows a disk state only
//! when the top layer is DRBD and `Created` otherwise, while Ferrite's satellites report a disk
//! state for plain storage volumes too (`UpToDate`, `Failed`, `Deleting`; `Unknown` while the
//! node is offline), so it is shown for every stack; `Created` remains for a volume without a
//! replication layer that has no reported state.
//!
//! A deletion takes two steps: the controller marks the resource (flag `DELETE`) or its disk
//! (flag `DISK_REMOVING`), its node deletes the backing volumes and confirms, and only then is
//! the resource forgotten or made diskless. Until then both lists show `DELETING` (as `linstor`
//! does) or `Removing disk`.
//!
//! The replication layer is DRBD in LINSTOR's shapes whichever engine runs it; its `engine`
//! field says which. The Layers column names the engine: `DRBD,STORAGE` for the kernel's DRBD,
//! `MIRROR,STORAGE` for Ferrite's own. A volume that is being synchronised shows its progress
//! as its state (`SyncTarget 43.2%`); `--peers` adds the state of each peer connection.

use std::collections::BTreeMap;

use ferrite_client::{ListFilter, NewResource};
use ferrite_types::LayerKind;
use ferrite_types::api_call_rc::ApiCallRc;
use ferrite_types::rest::{
    AutoPlaceRequest, DrbdResource, ResourceLayer, ResourceMakeAvailable, ResourceModify,
    ResourceWithVolumes, ToggleDiskOperation, ToggleDiskRequest, Volume, VolumeLayerData,
};
use ferrite_types::size::format_kib;

use super::{
    Ctx, Failure, Outcome, diskless_on_remaining, emit, local_datetime, prop_cells,
    property_change, select_filter, show_prop_columns, with_prop_columns,
};
use crate::args::resource::{
    ResourceCommand, ResourceCreate, ResourceList, VolumeCommand, VolumeListArgs,
};

/// LINSTOR's flags of a resource marked for deletion.
const FLAG_DELETE: &str = "DELETE";
const FLAG_DRBD_DELETE: &str = "DRBD_DELETE";
/// A resource whose disk is being removed (`toggle-disk --diskless`) until its node confirms.
const FLAG_DISK_REMOVING: &str = "DISK_REMOVING";
use crate::output::{Color, Exit, Style, format_replies};
use crate::table::{Cell, Column, Table};

pub fn run(ctx: &Ctx, command: ResourceCommand) -> Outcome {
    match command {
        ResourceCommand::Create(create) => {
            if create.auto_place.is_some() {
                let body = autoplace_body(&create)?;
                return ctx.one(ctx.client.autoplace(create.resource_definition(), &body));
            }
            let resources = new_resources(&create)?;
            ctx.one(
                ctx.client
                    .create_resources(create.resource_definition(), &resources),
            )
        }
        ResourceCommand::Activate(args) => super::physical_storage::set_active(ctx, &args, true),
        ResourceCommand::Deactivate(args) => super::physical_storage::set_active(ctx, &args, false),
        ResourceCommand::MakeAvailable(make) => ctx.one(ctx.client.make_available(
            &make.resource_name,
            &make.node_name,
            &ResourceMakeAvailable {
                layer_list: make.layer_list.map(|l| l.0),
                diskful: Some(make.diskful),
            },
        )),
        ResourceCommand::List(list) => {
            let resources = ctx.client.resources(&ListFilter {
                nodes: list.nodes.clone(),
                resources: list.resources.clone(),
                props: list.props.clone(),
                ..Default::default()
            })?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&resources.raw));
            }
            emit(&render_resources(
                &resources.items,
                &list,
                &ctx.table_style(list.table.pastable),
            ));
            Ok(Exit::Ok)
        }
        ResourceCommand::ListVolumes(list) => list_volumes(ctx, &list),
        ResourceCommand::Delete(delete) => {
            let name = delete.name.clone();
            let keep = delete.keep_tiebreaker;
            ctx.run_all(delete.node_name, |client, node| {
                client.delete_resource(&name, &node, keep)
            })
        }
        ResourceCommand::ToggleDisk(toggle) => {
            let request = ToggleDiskRequest {
                operation: if toggle.diskless {
                    ToggleDiskOperation::IntoDrbdDiskless
                } else {
                    ToggleDiskOperation::IntoDrbdDiskful
                },
                storage_pool: toggle.storage_pool.clone(),
                migrate_from: toggle.migrate_from.clone(),
                layer_list: None,
            };
            ctx.one(
                ctx.client
                    .toggle_disk(&toggle.name, &toggle.node_name, &request),
            )
        }
        ResourceCommand::SetProperty(set) => {
            let change = property_change(&set.property);
            ctx.one(ctx.client.modify_resource(
                &set.name,
                &set.node_name,
                &ResourceModify {
                    override_props: change.override_props,
                    delete_props: change.delete_props,
                    ..Default::default()
                },
            ))
        }
        ResourceCommand::ListProperties(list) => {
            let resources = ctx.client.resources(&ListFilter {
                nodes: vec![list.node_name.clone()],
                resources: vec![list.resource_name.clone()],
                ..Default::default()
            })?;
            let resource = resources.items.iter().find(|r| {
                r.resource.name.eq_ignore_ascii_case(&list.resource_name)
                    && r.resource.node_name.eq_ignore_ascii_case(&list.node_name)
            });
            Ok(ctx.properties(resource.map(|r| &r.resource.props), list.table.pastable))
        }
    }
}

pub fn run_volume(ctx: &Ctx, command: VolumeCommand) -> Outcome {
    match command {
        VolumeCommand::List(list) => list_volumes(ctx, &list),
        VolumeCommand::RecreateMissing(missing) => ctx.one(ctx.client.recreate_missing_volume(
            &missing.resource_name,
            &missing.node_name,
            missing.volume_nr,
        )),
    }
}

fn list_volumes(ctx: &Ctx, list: &VolumeListArgs) -> Outcome {
    let resources = ctx.client.resources(&ListFilter {
        nodes: list.nodes.clone(),
        resources: list.resources.clone(),
        storage_pools: list.storage_pools.clone(),
        ..Default::default()
    })?;
    if ctx.machine_readable {
        return Ok(ctx.listing_json(&resources.raw));
    }
    emit(&render_volumes(
        &resources.items,
        list,
        &ctx.table_style(list.table.pastable),
    ));
    Ok(Exit::Ok)
}

/// The resources of a `resource create` without `--auto-place`.
pub fn new_resources(create: &ResourceCreate) -> Result<Vec<NewResource>, Failure> {
    if create.nodes().is_empty() {
        return Err(Failure::usage(
            "resource create: too few arguments: give the nodes before the resource name, or \
             --auto-place N.",
        ));
    }
    let mut flags = Vec::new();
    if create.diskless {
        flags.push("DISKLESS".to_string());
    }
    if create.drbd_diskless {
        flags.push("DRBD_DISKLESS".to_string());
    }
    if create.inactive {
        flags.push("INACTIVE".to_string());
    }
    let storage_pool = create
        .placement
        .storage_pool
        .as_ref()
        .and_then(|pools| pools.first())
        .filter(|pool| !pool.is_empty())
        .cloned();
    Ok(create
        .nodes()
        .iter()
        .map(|node| NewResource {
            node_name: node.clone(),
            flags: flags.clone(),
            storage_pool: storage_pool.clone(),
            layer_list: create
                .placement
                .layer_list
                .clone()
                .map(|l| l.0)
                .unwrap_or_default(),
            node_id: create.node_id,
            tcp_port: create.drbd_tcp_port.map(i32::from),
        })
        .collect())
}

/// The body of `resource create --auto-place N`.
pub fn autoplace_body(create: &ResourceCreate) -> Result<AutoPlaceRequest, Failure> {
    let mut filter = select_filter(
        create.auto_place,
        &create.placement,
        create.providers.as_ref(),
    )?;
    if create.drbd_diskless {
        filter.diskless_type = Some("DRBD_DISKLESS".into());
    } else if create.diskless {
        filter.diskless_type = Some("DISKLESS".into());
    }
    Ok(AutoPlaceRequest {
        diskless_on_remaining: diskless_on_remaining(&create.placement),
        select_filter: filter,
        layer_list: create.placement.layer_list.clone().map(|l| l.0),
    })
}

fn has_flag(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f == flag)
}

/// The name of a layer as Ferrite shows it: the replication layer by its engine (`MIRROR`
/// or `DRBD`), which LINSTOR's shapes give in the DRBD data's `engine` field.
pub fn shown_layer(layer_type: LayerKind, engine: Option<&str>) -> String {
    match engine {
        Some(engine) if layer_type.is_replication() => engine.to_string(),
        _ => layer_type.as_str().to_string(),
    }
}

/// The layers of a resource, top-most first, each once; the replication layer named by its
/// engine.
pub fn layer_names(layer: &ResourceLayer) -> Vec<String> {
    fn walk(layer: &ResourceLayer, out: &mut Vec<String>) {
        let engine = layer.drbd.as_ref().and_then(|d| d.engine.as_deref());
        let name = shown_layer(layer.layer_type, engine);
        if !out.contains(&name) {
            out.push(name);
        }
        for child in &layer.children {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(layer, &mut out);
    out
}

/// The replication layer's data of a resource, if it has one.
fn replication_data(layer: &ResourceLayer) -> Option<&DrbdResource> {
    layer
        .drbd
        .as_ref()
        .or_else(|| layer.children.iter().find_map(replication_data))
}

/// Peers the replication layer is not connected to, grouped by the reason given.
fn failed_connections(resource: &ResourceWithVolumes) -> Vec<(String, Vec<String>)> {
    let mut failed: Vec<(String, Vec<String>)> = Vec::new();
    let connections = resource
        .resource
        .layer_object
        .as_ref()
        .and_then(replication_data)
        .map(|data| &data.connections);
    for (peer, connection) in connections.into_iter().flatten() {
        if connection.connected {
            continue;
        }
        let message = connection.message.clone();
        match failed.iter_mut().find(|(m, _)| *m == message) {
            Some((_, peers)) => peers.push(peer.clone()),
            None => failed.push((message, vec![peer.clone()])),
        }
    }
    failed
}

/// The Peers cell (`--peers`): each peer connection and its state, one per line; red when
/// one is not connected.
fn peers_cell(resource: &ResourceWithVolumes) -> Cell {
    let Some(data) = resource
        .resource
        .layer_object
        .as_ref()
        .and_then(replication_data)
    else {
        return Cell::default();
    };
    let lines: Vec<String> = data
        .connections
        .iter()
        .map(|(peer, connection)| format!("{peer}: {}", connection.message))
        .collect();
    let healthy = data.connections.values().all(|c| c.connected);
    Cell::colored(lines.join("\n"), (!healthy).then_some(Color::Red))
}

/// A synchronisation the volume is the target of, as `SyncTarget 43.2%`.
fn sync_progress(volume: &Volume) -> Option<String> {
    volume
        .state
        .replication_states
        .values()
        .find(|s| s.replication_state.as_deref() == Some("SyncTarget"))
        .map(|s| match s.done_percentage {
            Some(done) => format!("SyncTarget {done:.1}%"),
            None => "SyncTarget".to_string(),
        })
}

/// Whether a volume's top layer replicates, so that a missing disk state means "unknown".
fn expects_disk_state(volume: &Volume) -> bool {
    volume
        .layer_data_list
        .first()
        .is_some_and(|l| l.layer_type.is_replication())
}

/// A volume's State cell: text and color (`None` is the healthy default).
pub fn volume_state(volume: &Volume, resource_flags: &[String]) -> (String, Option<Color>) {
    let prefix = if has_flag(&volume.flags, "RESIZE") {
        "Resizing, "
    } else {
        ""
    };
    let Some(disk) = volume.state.disk_state.as_deref() else {
        return if expects_disk_state(volume) {
            (format!("{prefix}Unknown"), Some(Color::Yellow))
        } else {
            (format!("{prefix}Created"), None)
        };
    };
    match disk {
        // DRBD's word, and Ferrite's for a volume whose node is offline.
        "DUnknown" | "Unknown" => (format!("{prefix}Unknown"), Some(Color::Yellow)),
        "Diskless" if !has_flag(resource_flags, "DISKLESS") => {
            (format!("{prefix}Diskless"), Some(Color::Red))
        }
        "Diskless" if has_flag(resource_flags, "TIE_BREAKER") => ("TieBreaker".into(), None),
        "Diskless" => (format!("{prefix}Diskless"), None),
        "Inconsistent" if let Some(progress) = sync_progress(volume) => {
            (format!("{prefix}{progress}"), Some(Color::Yellow))
        }
        "Inconsistent" | "Failed" | "To: Creating" | "To: Attachable" | "To: Attaching" => {
            (format!("{prefix}{disk}"), Some(Color::Red))
        }
        "UpToDate" | "Created" | "Attached" => (format!("{prefix}{disk}"), None),
        other => (format!("{prefix}{other}"), Some(Color::Yellow)),
    }
}

/// How many resources of each name are in use (two primaries are worth a yellow warning).
fn in_use_counts(resources: &[ResourceWithVolumes]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for r in resources {
        if r.resource.state.as_ref().and_then(|s| s.in_use) == Some(true) {
            *counts.entry(r.resource.name.as_str()).or_insert(0) += 1;
        }
    }
    counts
}

/// The Usage cell; empty, as LINSTOR's client leaves it, for a resource being deleted or
/// deactivated.
fn usage_cell(resource: &ResourceWithVolumes, in_use: &BTreeMap<&str, usize>) -> Cell {
    let flags = &resource.resource.flags;
    if has_flag(flags, FLAG_DELETE)
        || has_flag(flags, FLAG_DRBD_DELETE)
        || has_flag(flags, "INACTIVE")
    {
        return Cell::default();
    }
    match resource.resource.state.as_ref().and_then(|s| s.in_use) {
        Some(true) => {
            let color = if in_use.get(resource.resource.name.as_str()) > Some(&1) {
                Color::Yellow
            } else {
                Color::Green
            };
            Cell::colored("InUse", Some(color))
        }
        Some(false) => "Unused".into(),
        None => "".into(),
    }
}

/// The state a pending deletion gives a resource and each of its volumes, if one is pending.
pub fn deletion_state(flags: &[String]) -> Option<(String, Option<Color>)> {
    if has_flag(flags, FLAG_DELETE) || has_flag(flags, FLAG_DRBD_DELETE) {
        Some(("DELETING".into(), Some(Color::Red)))
    } else if has_flag(flags, FLAG_DISK_REMOVING) {
        Some(("Removing disk".into(), Some(Color::Yellow)))
    } else {
        None
    }
}

/// The State of a resource: the first volume that is not healthy, else the last volume.
pub fn resource_state(resource: &ResourceWithVolumes) -> (String, Option<Color>) {
    let flags = &resource.resource.flags;
    if let Some(state) = deletion_state(flags) {
        return state;
    }
    if has_flag(flags, "INACTIVE") {
        return ("INACTIVE".into(), Some(Color::Yellow));
    }
    let mut state = ("Unknown".to_string(), Some(Color::Yellow));
    if resource.resource.state.is_some() {
        for volume in &resource.volumes {
            state = volume_state(volume, flags);
            if has_flag(flags, "EVACUATE") {
                state.0.push_str(", Evacuating");
            }
            if state.1.is_some() {
                break;
            }
        }
    }
    state
}

pub fn render_resources(
    resources: &[ResourceWithVolumes],
    list: &ResourceList,
    style: &Style,
) -> String {
    let props = show_prop_columns(&list.show_props);
    let mut columns = vec![Column::new("ResourceName"), Column::new("Node")];
    if list.show_drbd_ports {
        columns.push(Column::new("DRBD Ports"));
    }
    columns.extend([
        Column::new("Layers"),
        Column::new("Usage"),
        Column::new("Conns").colored(Color::DarkGreen),
        Column::new("State").colored(Color::DarkGreen).right(),
        Column::new("CreatedOn"),
    ]);
    if list.peers {
        columns.push(Column::new("Peers"));
    }
    let mut table = Table::new(with_prop_columns(columns, &props));
    table.group_by(&list.table.groupby);
    let in_use = in_use_counts(resources);
    for resource in resources {
        let (state, state_color) = resource_state(resource);
        let failed = failed_connections(resource);
        let conns = if state == "Unknown" {
            Cell::default()
        } else if failed.is_empty() {
            "Ok".into()
        } else {
            let entries: Vec<String> = failed
                .iter()
                .map(|(message, peers)| format!("{message}({})", peers.join(",")))
                .collect();
            Cell::colored(entries.join(","), Some(Color::Red))
        };
        if list.faulty && state_color.is_none() && (conns.text == "Ok" || conns.text.is_empty()) {
            continue;
        }
        let layer = resource.resource.layer_object.as_ref();
        let mut row: Vec<Cell> = vec![
            resource.resource.name.clone().into(),
            resource.resource.node_name.clone().into(),
        ];
        if list.show_drbd_ports {
            let ports: Vec<String> = layer
                .and_then(replication_data)
                .map(|d| d.tcp_ports.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default();
            row.push(ports.join(", ").into());
        }
        let state_color = if failed.is_empty() {
            state_color
        } else {
            Some(Color::Red)
        };
        row.extend([
            layer
                .map(|l| layer_names(l).join(","))
                .unwrap_or_default()
                .into(),
            usage_cell(resource, &in_use),
            conns,
            Cell::colored(state, state_color),
            resource
                .resource
                .create_timestamp
                .map(local_datetime)
                .unwrap_or_default()
                .into(),
        ]);
        if list.peers {
            row.push(peers_cell(resource));
        }
        row.extend(prop_cells(&resource.resource.props, &props));
        table.row(row);
    }
    table.render(style)
}

/// The Repl cell: `Established(N)` when every peer is, else one line per peer.
fn replication_cell(volume: &Volume) -> Cell {
    let states = &volume.state.replication_states;
    if states.is_empty() {
        return Cell::default();
    }
    let established = states
        .values()
        .filter(|s| s.replication_state.as_deref() == Some("Established"))
        .count();
    if established == states.len() {
        return Cell::colored(format!("Established({established})"), Some(Color::Green));
    }
    let mut verifying = false;
    let lines: Vec<String> = states
        .iter()
        .map(|(peer, state)| {
            let name = state.replication_state.as_deref().unwrap_or("Unknown");
            verifying |= name == "VerifyT";
            match name {
                "SyncTarget" | "PausedSyncS" | "PausedSyncT" | "VerifyT" => {
                    let percent = state
                        .done_percentage
                        .map(|p| format!("{p:.2}%"))
                        .unwrap_or_else(|| "?".into());
                    format!("{peer}: {name}({percent})")
                }
                _ => format!("{peer}: {name}"),
            }
        })
        .collect();
    let color = if verifying {
        Color::Gray
    } else {
        Color::Yellow
    };
    Cell::colored(lines.join("\n"), Some(color))
}

/// The DRBD minor number of a volume, when its replication layer has one.
fn minor_number(volume: &Volume) -> String {
    volume
        .layer_data_list
        .iter()
        .filter(|l| l.layer_type.is_replication())
        .find_map(|l| match &l.data {
            VolumeLayerData::Drbd(drbd) => drbd.drbd_volume_definition.minor_number.map(i64::from),
            data => data
                .as_json()?
                .get("drbd_volume_definition")?
                .get("minor_number")?
                .as_i64(),
        })
        .map(|m| m.to_string())
        .unwrap_or_default()
}

/// The NBD export of a volume, when its replication layer has one (Ferrite's MIRROR engine).
fn nbd_uri(volume: &Volume) -> Option<&str> {
    volume
        .layer_data_list
        .iter()
        .filter(|l| l.layer_type.is_replication())
        .find_map(|l| match &l.data {
            VolumeLayerData::Drbd(drbd) => drbd.nbd_uri.as_deref(),
            data => data.as_json()?.get("nbd_uri")?.as_str(),
        })
}

/// LINSTOR's columns; where any volume listed has an NBD export (the MIRROR engine), an `NBD`
/// column follows `DeviceName` with it. Tables of DRBD and unreplicated volumes keep exactly
/// LINSTOR's columns.
pub fn render_volumes(
    resources: &[ResourceWithVolumes],
    list: &VolumeListArgs,
    style: &Style,
) -> String {
    let props = show_prop_columns(&list.show_props);
    let with_nbd = resources
        .iter()
        .flat_map(|r| &r.volumes)
        .any(|v| nbd_uri(v).is_some());
    let mut columns = vec![
        Column::new("Resource"),
        Column::new("Node"),
        Column::new("StoragePool"),
        Column::new("VolNr").right(),
        Column::new("MinorNr").right(),
        Column::new("DeviceName"),
    ];
    if with_nbd {
        columns.push(Column::new("NBD"));
    }
    columns.extend([
        Column::new("Allocated").right(),
        Column::new("InUse"),
        Column::new("State").colored(Color::DarkGreen).right(),
    ]);
    if !list.hide_replication_states {
        columns.push(Column::new("Repl"));
    }
    let mut table = Table::new(with_prop_columns(columns, &props)).unsorted();
    table.group_by(&list.table.groupby);
    let in_use = in_use_counts(resources);
    let mut reports: Vec<ApiCallRc> = Vec::new();
    for resource in resources {
        let flags = &resource.resource.flags;
        if has_flag(flags, "INACTIVE") && !has_flag(flags, "EVICTED") {
            continue;
        }
        let conn_failed = !failed_connections(resource).is_empty();
        for volume in &resource.volumes {
            let (text, mut color) = if let Some(state) = deletion_state(flags) {
                state
            } else if has_flag(flags, "INACTIVE") {
                ("INACTIVE".to_string(), Some(Color::Yellow))
            } else {
                volume_state(volume, flags)
            };
            if conn_failed {
                color = Some(Color::Red);
            }
            let state = if volume.reports.iter().any(ApiCallRc::is_error) {
                Cell::colored("Error", Some(Color::Red))
            } else {
                Cell::colored(text, color)
            };
            reports.extend(volume.reports.iter().cloned());
            let mut row: Vec<Cell> = vec![
                resource.resource.name.clone().into(),
                resource.resource.node_name.clone().into(),
                volume.storage_pool_name.clone().unwrap_or_default().into(),
                volume.volume_number.to_string().into(),
                minor_number(volume).into(),
                volume.device_path.clone().unwrap_or_default().into(),
            ];
            if with_nbd {
                row.push(nbd_uri(volume).unwrap_or_default().to_string().into());
            }
            row.extend([
                volume
                    .allocated_size_kib
                    .filter(|kib| *kib > 0)
                    .map(|kib| format_kib(kib as u64))
                    .unwrap_or_default()
                    .into(),
                usage_cell(resource, &in_use),
                state,
            ]);
            if !list.hide_replication_states {
                row.push(replication_cell(volume));
            }
            row.extend(prop_cells(&volume.props, &props));
            table.row(row);
        }
    }
    let mut out = table.render(style);
    out.push_str(&format_replies(&reports, style));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{PlaceCount, PlacementOpts, TableOpts};
    use serde_json::Value;

    const PLAIN: Style = Style {
        utf8: false,
        color: false,
    };

    /// A resource as LINSTOR answers it for the tutorial (DRBD over STORAGE).
    fn tutorial_resource(node: &str, disk: &str, diskless: bool, peers: &[&str]) -> Value {
        let connections: serde_json::Map<String, Value> = peers
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    serde_json::json!({"connected": true, "message": "Connected"}),
                )
            })
            .collect();
        let replication: serde_json::Map<String, Value> = peers
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    serde_json::json!({"replication_state": "Established"}),
                )
            })
            .collect();
        let flags: Vec<&str> = if diskless {
            vec!["DISKLESS", "DRBD_DISKLESS"]
        } else {
            vec![]
        };
        serde_json::json!({
            "name": "my_ssd_res", "node_name": node, "props": {}, "flags": flags,
            "layer_object": {"type": "DRBD", "children": [{"type": "STORAGE", "children": [],
                "storage": {"storage_volumes": []}}],
                "drbd": {"connections": connections, "tcp_ports": [7000]}},
            "state": {"in_use": false},
            "create_timestamp": 1795538418756i64,
            "volumes": [{
                "volume_number": 0,
                "storage_pool_name": if diskless { "DfltDisklessStorPool" } else { "pool_ssd" },
                "provider_kind": if diskless { "DISKLESS" } else { "LVM" },
                "device_path": "/dev/drbd1000",
                "allocated_size_kib": if diskless { Value::Null } else { serde_json::json!(20971520) },
                "props": {}, "flags": [],
                "state": {"disk_state": disk, "replication_states": replication},
                "layer_data_list": [
                    {"type": "DRBD", "data": {"drbd_volume_definition": {"volume_number": 0, "minor_number": 1000}}},
                    {"type": "STORAGE", "data": {}}
                ],
                "reports": []
            }]
        })
    }

    fn resources(values: Vec<Value>) -> Vec<ResourceWithVolumes> {
        serde_json::from_value(Value::Array(values)).unwrap()
    }

    fn resource_list() -> ResourceList {
        ResourceList {
            table: TableOpts::default(),
            resources: vec![],
            nodes: vec![],
            all: false,
            faulty: false,
            props: vec![],
            show_props: vec![],
            show_drbd_ports: false,
            peers: false,
        }
    }

    fn volume_list() -> VolumeListArgs {
        VolumeListArgs {
            table: TableOpts::default(),
            nodes: vec![],
            storage_pools: vec![],
            resources: vec![],
            all: false,
            hide_replication_states: false,
            show_props: vec![],
        }
    }

    #[test]
    fn resource_list_layout_as_in_the_tutorial() {
        let list = resources(vec![
            tutorial_resource("bravo", "UpToDate", false, &["alpha", "delta"]),
            tutorial_resource("alpha", "Diskless", true, &["bravo", "delta"]),
            tutorial_resource("delta", "UpToDate", false, &["alpha", "bravo"]),
        ]);
        let text = render_resources(&list, &resource_list(), &PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("+{}+", "-".repeat(87)));
        assert_eq!(
            lines[1],
            "| ResourceName | Node  | Layers       | Usage  | Conns |    State | CreatedOn           |"
        );
        assert_eq!(lines[2], format!("|{}|", "=".repeat(87)));
        // CreatedOn depends on the local time zone; the rest of each row does not.
        assert!(
            lines[3].starts_with(
                "| my_ssd_res   | bravo | DRBD,STORAGE | Unused | Ok    | UpToDate | "
            ),
            "{text}"
        );
        assert!(
            lines[4].starts_with(
                "| my_ssd_res   | alpha | DRBD,STORAGE | Unused | Ok    | Diskless | "
            ),
            "{text}"
        );
        assert!(
            lines[5].starts_with(
                "| my_ssd_res   | delta | DRBD,STORAGE | Unused | Ok    | UpToDate | "
            ),
            "{text}"
        );
        assert_eq!(lines[3].len(), 89);
    }

    #[test]
    fn volume_list_as_in_the_tutorial() {
        let list = resources(vec![
            tutorial_resource("alpha", "Diskless", true, &["bravo", "delta"]),
            tutorial_resource("bravo", "UpToDate", false, &["alpha", "delta"]),
            tutorial_resource("delta", "UpToDate", false, &["alpha", "bravo"]),
        ]);
        assert_eq!(
            render_volumes(&list, &volume_list(), &PLAIN),
            "\
+------------------------------------------------------------------------------------------------------------------------------+
| Resource   | Node  | StoragePool          | VolNr | MinorNr | DeviceName    | Allocated | InUse  |    State | Repl           |
|==============================================================================================================================|
| my_ssd_res | alpha | DfltDisklessStorPool |     0 |    1000 | /dev/drbd1000 |           | Unused | Diskless | Established(2) |
| my_ssd_res | bravo | pool_ssd             |     0 |    1000 | /dev/drbd1000 |    20 GiB | Unused | UpToDate | Established(2) |
| my_ssd_res | delta | pool_ssd             |     0 |    1000 | /dev/drbd1000 |    20 GiB | Unused | UpToDate | Established(2) |
+------------------------------------------------------------------------------------------------------------------------------+
"
        );
    }

    #[test]
    fn failed_connections_and_sync_progress() {
        let mut value = tutorial_resource("alpha", "Inconsistent", false, &["bravo", "delta"]);
        value["layer_object"]["drbd"]["connections"]["delta"] =
            serde_json::json!({"connected": false, "message": "Connecting"});
        value["volumes"][0]["state"]["replication_states"]["bravo"] =
            serde_json::json!({"replication_state": "SyncTarget", "done_percentage": 42.5});
        let list = resources(vec![value]);
        let text = render_resources(&list, &resource_list(), &PLAIN);
        assert!(
            text.contains("| Connecting(delta) | SyncTarget 42.5% |"),
            "{text}"
        );
        let mut peers = resource_list();
        peers.peers = true;
        let text = render_resources(&list, &peers, &PLAIN);
        assert!(text.contains("| Peers             |"), "{text}");
        assert!(text.contains("| bravo: Connected  |"), "{text}");
        assert!(text.contains("| delta: Connecting |"), "{text}");
        let text = render_volumes(&list, &volume_list(), &PLAIN);
        assert!(text.contains("| bravo: SyncTarget(42.50%) |"), "{text}");
        assert!(text.contains("| delta: Established        |"), "{text}");
        let mut faulty = resource_list();
        faulty.faulty = true;
        assert!(render_resources(&list, &faulty, &PLAIN).contains("alpha"));
        let healthy = resources(vec![tutorial_resource(
            "bravo",
            "UpToDate",
            false,
            &["alpha"],
        )]);
        assert!(!render_resources(&healthy, &faulty, &PLAIN).contains("bravo"));
    }

    #[test]
    fn ferrite_mirror_resources() {
        // As the controller answers: the DRBD layer, its engine MIRROR.
        let list = resources(vec![serde_json::json!({
            "name": "r1", "node_name": "n1", "props": {}, "flags": [],
            "layer_object": {"type": "DRBD", "children": [{"type": "STORAGE", "children": []}],
                "drbd": {"connections": {}, "engine": "MIRROR", "flags": [], "drbd_volumes": []}},
            "state": {"in_use": true},
            "volumes": [{"volume_number": 0, "storage_pool_name": "p", "props": {}, "flags": [],
                "state": {"disk_state": "DUnknown"},
                "layer_data_list": [{"type": "DRBD", "data": {"drbd_volume_definition": {"volume_number": 0}, "engine": "MIRROR"}},
                                    {"type": "STORAGE", "data": {}}],
                "reports": [{"ret_code": -4611686018427386906i64, "message": "losetup failed"}]}]
        })]);
        let text = render_resources(&list, &resource_list(), &PLAIN);
        assert!(
            text.contains(
                "| r1           | n1   | MIRROR,STORAGE | InUse |       | Unknown |           |"
            ),
            "{text}"
        );
        let text = render_volumes(&list, &volume_list(), &PLAIN);
        assert!(text.contains("| Error |"), "{text}");
        assert!(text.ends_with("ERROR:\n    losetup failed\n"), "{text}");
        assert!(
            !text.contains("NBD"),
            "no export reported, no column: {text}"
        );
    }

    #[test]
    fn mirror_volumes_show_their_device_and_nbd_export() {
        let uri = "nbd+unix:///r1/0?socket=/var/lib/ferrite/satellite/mirror/run/r1/0.nbd";
        let list = resources(vec![serde_json::json!({
            "name": "r1", "node_name": "n1", "props": {}, "flags": ["DRBD_DISKLESS"],
            "layer_object": {"type": "DRBD", "children": [],
                "drbd": {"connections": {}, "engine": "MIRROR", "flags": [], "drbd_volumes": []}},
            "state": {"in_use": false},
            "volumes": [{"volume_number": 0, "storage_pool_name": "DfltDisklessStorPool",
                "device_path": "/dev/ferrite/r1/0", "props": {}, "flags": [],
                "state": {"disk_state": "Diskless"},
                "layer_data_list": [{"type": "DRBD", "data": {
                    "drbd_volume_definition": {"volume_number": 0, "minor_number": 1000},
                    "device_path": "/dev/ferrite/r1/0", "nbd_uri": uri, "engine": "MIRROR"}}]}]
        })]);
        let text = render_volumes(&list, &volume_list(), &PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].contains("| DeviceName        | NBD "),
            "the NBD column follows DeviceName: {text}"
        );
        assert!(
            lines[3].contains(&format!("| /dev/ferrite/r1/0 | {uri} |")),
            "{text}"
        );
    }

    #[test]
    fn storage_only_volumes_show_what_the_satellite_reported() {
        let mut volume: Volume = serde_json::from_value(serde_json::json!({
            "volume_number": 0, "state": {"disk_state": "UpToDate"},
            "layer_data_list": [{"type": "STORAGE", "data": {}}]
        }))
        .unwrap();
        assert_eq!(volume_state(&volume, &[]), ("UpToDate".into(), None));
        volume.state.disk_state = Some("Failed".into());
        assert_eq!(
            volume_state(&volume, &[]),
            ("Failed".into(), Some(Color::Red))
        );
        volume.state.disk_state = Some("DUnknown".into());
        assert_eq!(
            volume_state(&volume, &[]),
            ("Unknown".into(), Some(Color::Yellow))
        );
        volume.state.disk_state = None;
        assert_eq!(volume_state(&volume, &[]), ("Created".into(), None));
    }

    #[test]
    fn pending_deletions_show_in_both_lists() {
        let mut deleting = tutorial_resource("alpha", "Deleting", false, &["bravo"]);
        deleting["flags"] = serde_json::json!(["DELETE"]);
        let mut removing = tutorial_resource("bravo", "Deleting", false, &["alpha"]);
        removing["flags"] = serde_json::json!(["DISK_REMOVING"]);
        let list = resources(vec![deleting, removing]);
        let text = render_resources(&list, &resource_list(), &PLAIN);
        assert!(text.contains("| Ok    |      DELETING | "), "{text}");
        assert!(text.contains("| Ok    | Removing disk | "), "{text}");
        let text = render_volumes(&list, &volume_list(), &PLAIN);
        assert!(
            text.contains("|      DELETING | Established(1) |"),
            "{text}"
        );
        assert!(
            text.contains("| Removing disk | Established(1) |"),
            "{text}"
        );
        assert_eq!(
            resource_state(&list[0]),
            ("DELETING".into(), Some(Color::Red))
        );
        assert_eq!(
            resource_state(&list[1]),
            ("Removing disk".into(), Some(Color::Yellow))
        );
        // LINSTOR's DRBD_DELETE reads the same.
        assert_eq!(
            deletion_state(&["DRBD_DELETE".into()]),
            Some(("DELETING".into(), Some(Color::Red)))
        );
        assert_eq!(deletion_state(&["DISKLESS".into()]), None);
        // A deletion that failed on its node still shows the error.
        let mut failed = tutorial_resource("charlie", "Failed", false, &[]);
        failed["flags"] = serde_json::json!(["DELETE"]);
        failed["volumes"][0]["reports"] = serde_json::json!([
            {"ret_code": -4611686018427386906i64, "message": "could not delete"}
        ]);
        let text = render_volumes(&resources(vec![failed]), &volume_list(), &PLAIN);
        assert!(text.contains("| Error |"), "{text}");
    }

    #[test]
    fn inactive_and_evacuating_resources_read_as_in_linstor() {
        let mut inactive = tutorial_resource("alpha", "Inactive", false, &["bravo"]);
        inactive["flags"] = serde_json::json!(["INACTIVE"]);
        let mut evacuating = tutorial_resource("bravo", "UpToDate", false, &["alpha"]);
        evacuating["flags"] = serde_json::json!(["EVACUATE"]);
        let mut both = tutorial_resource("charlie", "UpToDate", false, &[]);
        both["flags"] = serde_json::json!(["EVACUATE", "DELETE"]);
        let list = resources(vec![inactive, evacuating, both]);
        assert_eq!(
            resource_state(&list[0]),
            ("INACTIVE".into(), Some(Color::Yellow))
        );
        assert_eq!(resource_state(&list[1]).0, "UpToDate, Evacuating");
        // A deletion reads DELETING whatever else is marked.
        assert_eq!(
            resource_state(&list[2]),
            ("DELETING".into(), Some(Color::Red))
        );
        let text = render_resources(&list, &resource_list(), &PLAIN);
        // An inactive or deleted resource has no Usage, as in LINSTOR's client.
        assert!(
            text.contains(
                "| my_ssd_res   | alpha   | DRBD,STORAGE |        | Ok    |             INACTIVE | "
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| my_ssd_res   | bravo   | DRBD,STORAGE | Unused | Ok    | UpToDate, Evacuating | "
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| my_ssd_res   | charlie | DRBD,STORAGE |        | Ok    |             DELETING | "
            ),
            "{text}"
        );
        // The volume list leaves an inactive resource out: its volumes are down.
        let text = render_volumes(&list, &volume_list(), &PLAIN);
        assert!(!text.contains("alpha"), "{text}");
        assert!(text.contains("bravo"), "{text}");
    }

    #[test]
    fn volumes_of_offline_nodes_are_unknown() {
        let volume: Volume = serde_json::from_value(serde_json::json!({
            "volume_number": 0, "state": {"disk_state": "Unknown"},
            "layer_data_list": [{"type": "STORAGE", "data": {}}]
        }))
        .unwrap();
        assert_eq!(
            volume_state(&volume, &[]),
            ("Unknown".into(), Some(Color::Yellow))
        );
        let mut offline = tutorial_resource("alpha", "Unknown", false, &[]);
        offline["layer_object"] = serde_json::json!({"type": "STORAGE", "children": []});
        offline["volumes"][0]["layer_data_list"] =
            serde_json::json!([{"type": "STORAGE", "data": {}}]);
        let text = render_volumes(&resources(vec![offline]), &volume_list(), &PLAIN);
        assert!(text.contains("| Unknown |"), "{text}");
        let colored = render_volumes(
            &resources(vec![tutorial_resource("alpha", "Unknown", false, &[])]),
            &volume_list(),
            &Style {
                utf8: false,
                color: true,
            },
        );
        assert!(
            colored.contains("\u{1b}[1;33mUnknown\u{1b}[0m"),
            "{colored:?}"
        );
    }

    #[test]
    fn diskless_states() {
        let volume: Volume = serde_json::from_value(serde_json::json!({
            "volume_number": 0, "state": {"disk_state": "Diskless"}, "flags": ["RESIZE"],
            "layer_data_list": [{"type": "DRBD", "data": {}}]
        }))
        .unwrap();
        assert_eq!(
            volume_state(&volume, &["DRBD_DISKLESS".into()]),
            ("Resizing, Diskless".into(), Some(Color::Red)),
            "unintentionally diskless"
        );
        assert_eq!(
            volume_state(&volume, &["DISKLESS".into(), "TIE_BREAKER".into()]),
            ("TieBreaker".into(), None)
        );
    }

    fn create_args(nodes: &[&str]) -> ResourceCreate {
        ResourceCreate {
            diskless: false,
            drbd_diskless: false,
            node_id: None,
            async_: false,
            inactive: false,
            drbd_tcp_port: None,
            auto_place: None,
            placement: PlacementOpts::default(),
            providers: None,
            names: nodes.iter().chain(&["r"]).map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn resource_create_bodies() {
        let mut create = create_args(&["delta"]);
        create.diskless = true;
        let body = ferrite_client::endpoints::resources_body(&new_resources(&create).unwrap());
        assert_eq!(
            body,
            serde_json::json!([{"resource": {"node_name": "delta", "flags": ["DISKLESS"]}}])
        );
        assert!(new_resources(&create_args(&[])).is_err());
        let mut auto = create_args(&[]);
        auto.auto_place = Some(PlaceCount::Total(3));
        auto.drbd_diskless = true;
        assert_eq!(
            serde_json::to_value(autoplace_body(&auto).unwrap()).unwrap(),
            serde_json::json!({"select_filter": {"place_count": 3, "diskless_type": "DRBD_DISKLESS"}})
        );
    }
}
