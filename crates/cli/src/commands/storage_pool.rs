//! `storage-pool` (`sp`): creating pools of each provider on nodes, and `storage-pool list`.

use ferrite_client::{ListFilter, NewStoragePool};
use ferrite_types::ProviderKind;
use ferrite_types::rest::StoragePool;
use ferrite_types::size::format_kib;

use super::{
    Ctx, Failure, Outcome, emit, prop_cells, property_change, python_bool, show_prop_columns,
    with_prop_columns,
};
use crate::args::storage_pool::{PoolOpts, StoragePoolCommand, StoragePoolCreate, StoragePoolList};
use crate::output::{Color, Exit, Severity, Style, format_replies};
use crate::table::{Cell, Column, Table};

/// Property keys older LINSTOR versions used for the backing pool, tried after
/// `StorDriver/StorPoolName`.
const LEGACY_POOL_KEYS: &[&str] = &[
    "StorDriver/LvmVg",
    "StorDriver/ThinPool",
    "StorDriver/ZPool",
    "StorDriver/ZPoolThin",
    "StorDriver/FileDir",
];

pub fn run(ctx: &Ctx, command: StoragePoolCommand) -> Outcome {
    match command {
        StoragePoolCommand::Create(create) => {
            let (node, pool) = new_pool(create);
            ctx.one(ctx.client.create_storage_pool(&node, &pool))
        }
        StoragePoolCommand::List(list) => {
            let pools = ctx.client.storage_pools(&ListFilter {
                nodes: list.nodes.clone(),
                storage_pools: list.storage_pools.clone(),
                props: list.props.clone(),
                ..Default::default()
            })?;
            if ctx.machine_readable {
                return Ok(ctx.listing_json(&pools.raw));
            }
            let style = ctx.table_style(list.table.pastable);
            emit(&render_pools(&pools.items, &list, &style));
            Ok(Exit::Ok)
        }
        StoragePoolCommand::Delete(pool) => {
            ctx.one(ctx.client.delete_storage_pool(&pool.node_name, &pool.name))
        }
        StoragePoolCommand::SetProperty(set) => ctx.one(ctx.client.modify_storage_pool(
            &set.node_name,
            &set.name,
            &property_change(&set.property),
        )),
        StoragePoolCommand::ListProperties(list) => {
            let pool = find_pool(ctx, &list.node_name, &list.name)?;
            Ok(ctx.properties(pool.as_ref().map(|p| &p.props), list.table.pastable))
        }
    }
}

fn find_pool(ctx: &Ctx, node: &str, name: &str) -> Result<Option<StoragePool>, Failure> {
    let pools = ctx.client.storage_pools(&ListFilter {
        nodes: vec![node.to_string()],
        storage_pools: vec![name.to_string()],
        ..Default::default()
    })?;
    Ok(pools.items.into_iter().find(|p| {
        p.storage_pool_name.eq_ignore_ascii_case(name)
            && p.node_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(node))
    }))
}

/// The node and pool a `storage-pool create <provider>` describes.
pub fn new_pool(create: StoragePoolCreate) -> (String, NewStoragePool) {
    let (kind, args) = match create {
        StoragePoolCreate::Lvm(a) => (ProviderKind::Lvm, a),
        StoragePoolCreate::Lvmthin(a) => (ProviderKind::LvmThin, a),
        StoragePoolCreate::Zfs(a) => (ProviderKind::Zfs, a),
        StoragePoolCreate::Zfsthin(a) => (ProviderKind::ZfsThin, a),
        StoragePoolCreate::File(a) => (ProviderKind::File, a),
        StoragePoolCreate::Filethin(a) => (ProviderKind::FileThin, a),
        StoragePoolCreate::Diskless(a) => {
            return (
                a.node_name,
                pool(a.name, ProviderKind::Diskless, None, a.opts),
            );
        }
    };
    (
        args.node_name,
        pool(args.name, kind, Some(args.driver_pool_name), args.opts),
    )
}

fn pool(
    name: String,
    provider_kind: ProviderKind,
    driver_pool: Option<String>,
    opts: PoolOpts,
) -> NewStoragePool {
    NewStoragePool {
        name,
        provider_kind,
        driver_pool,
        shared_space: opts.shared_space,
        external_locking: opts.external_locking,
    }
}

/// The backing pool a storage pool takes space from.
pub fn driver_pool(pool: &StoragePool) -> String {
    std::iter::once(ferrite_types::PROP_STOR_POOL_NAME)
        .chain(LEGACY_POOL_KEYS.iter().copied())
        .find_map(|key| pool.props.get(key))
        .cloned()
        .unwrap_or_default()
}

/// Whether the pool can take snapshots: the field, else the `SupportsSnapshots` trait.
fn supports_snapshots(pool: &StoragePool) -> bool {
    pool.supports_snapshots.unwrap_or_else(|| {
        pool.static_traits
            .get("SupportsSnapshots")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

/// Ok, Warning or Error from the pool's reports.
fn pool_state(pool: &StoragePool) -> (&'static str, Color) {
    let severities: Vec<Severity> = pool.reports.iter().map(Severity::of).collect();
    if severities.contains(&Severity::Error) {
        ("Error", Color::Red)
    } else if severities.contains(&Severity::Warning) {
        ("Warning", Color::Yellow)
    } else {
        ("Ok", Color::Green)
    }
}

pub fn render_pools(pools: &[StoragePool], list: &StoragePoolList, style: &Style) -> String {
    let props = show_prop_columns(&list.show_props);
    let mut table = Table::new(with_prop_columns(
        vec![
            Column::new("StoragePool"),
            Column::new("Node"),
            Column::new("Driver"),
            Column::new("PoolName"),
            Column::new("FreeCapacity").right(),
            Column::new("TotalCapacity").right(),
            Column::new("CanSnapshots"),
            Column::new("State"),
            Column::new("SharedName"),
        ],
        &props,
    ));
    table.group_by(&list.table.groupby);
    let mut reports = Vec::new();
    for pool in pools {
        let (free, total) = match (pool.free_capacity, pool.total_capacity) {
            (Some(free), Some(total)) if pool.provider_kind.has_backing_device() => (
                format_kib(free.max(0) as u64),
                format_kib(total.max(0) as u64),
            ),
            _ => (String::new(), String::new()),
        };
        for report in &pool.reports {
            if !reports.contains(report) {
                reports.push(report.clone());
            }
        }
        let (state, color) = pool_state(pool);
        let shared = pool
            .free_space_mgr_name
            .clone()
            .filter(|name| !name.contains(':'))
            .unwrap_or_default();
        let mut row: Vec<Cell> = vec![
            pool.storage_pool_name.clone().into(),
            pool.node_name.clone().unwrap_or_default().into(),
            pool.provider_kind.as_str().into(),
            driver_pool(pool).into(),
            free.into(),
            total.into(),
            python_bool(supports_snapshots(pool)).into(),
            Cell::colored(state, Some(color)),
            shared.into(),
        ];
        row.extend(prop_cells(&pool.props, &props));
        table.row(row);
    }
    let mut out = table.render(style);
    out.push_str(&format_replies(&reports, style));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::TableOpts;
    use crate::args::storage_pool::{PoolWithDriver, PoolWithoutDriver};

    const PLAIN: Style = Style {
        utf8: false,
        color: false,
    };

    fn list_args() -> StoragePoolList {
        StoragePoolList {
            table: TableOpts::default(),
            storage_pools: vec![],
            nodes: vec![],
            props: vec![],
            show_props: vec![],
        }
    }

    /// The tutorial's `storage-pool list`, from the JSON shape the controller answers.
    #[test]
    fn pool_list_as_in_the_tutorial() {
        let mut pools = Vec::new();
        for node in ["alpha", "bravo", "charlie", "delta"] {
            pools.push(serde_json::json!({
                "storage_pool_name": "pool_ssd", "node_name": node, "provider_kind": "LVM",
                "props": {"StorDriver/StorPoolName": "drbdpool"},
                "free_capacity": 104857600i64, "total_capacity": 104857600i64,
                "free_space_mgr_name": format!("{node};pool_ssd"), "reports": [],
                "supports_snapshots": false
            }));
            pools.push(serde_json::json!({
                "storage_pool_name": "DfltDisklessStorPool", "node_name": node,
                "provider_kind": "DISKLESS", "props": {},
                "free_capacity": i64::MAX, "total_capacity": i64::MAX,
                "free_space_mgr_name": format!("{node};DfltDisklessStorPool"), "reports": [],
                "supports_snapshots": false
            }));
        }
        let pools: Vec<StoragePool> =
            serde_json::from_value(serde_json::Value::Array(pools)).unwrap();
        let expected = "\
+-------------------------------------------------------------------------------------------------------------------------------------------+
| StoragePool          | Node    | Driver   | PoolName | FreeCapacity | TotalCapacity | CanSnapshots | State | SharedName                   |
|===========================================================================================================================================|
| DfltDisklessStorPool | alpha   | DISKLESS |          |              |               | False        | Ok    | alpha;DfltDisklessStorPool   |
| DfltDisklessStorPool | bravo   | DISKLESS |          |              |               | False        | Ok    | bravo;DfltDisklessStorPool   |
| DfltDisklessStorPool | charlie | DISKLESS |          |              |               | False        | Ok    | charlie;DfltDisklessStorPool |
| DfltDisklessStorPool | delta   | DISKLESS |          |              |               | False        | Ok    | delta;DfltDisklessStorPool   |
| pool_ssd             | alpha   | LVM      | drbdpool |      100 GiB |       100 GiB | False        | Ok    | alpha;pool_ssd               |
| pool_ssd             | bravo   | LVM      | drbdpool |      100 GiB |       100 GiB | False        | Ok    | bravo;pool_ssd               |
| pool_ssd             | charlie | LVM      | drbdpool |      100 GiB |       100 GiB | False        | Ok    | charlie;pool_ssd             |
| pool_ssd             | delta   | LVM      | drbdpool |      100 GiB |       100 GiB | False        | Ok    | delta;pool_ssd               |
+-------------------------------------------------------------------------------------------------------------------------------------------+
";
        assert_eq!(render_pools(&pools, &list_args(), &PLAIN), expected);
    }

    #[test]
    fn reports_set_the_state_and_print_below_once() {
        let pool: StoragePool = serde_json::from_value(serde_json::json!({
            "storage_pool_name": "p", "node_name": "n", "provider_kind": "FILE_THIN",
            "props": {"StorDriver/StorPoolName": "/srv/p"}, "free_capacity": 1953497088i64,
            "total_capacity": 1953497088i64, "free_space_mgr_name": "a:b",
            "static_traits": {"SupportsSnapshots": "true"},
            "reports": [{"ret_code": -9223372036854774806i64, "message": "No active connection to satellite 'n'."}]
        }))
        .unwrap();
        let text = render_pools(&[pool.clone(), pool], &list_args(), &PLAIN);
        assert!(text.contains("| p           | n    | FILE_THIN | /srv/p   |     1.82 TiB |      1.82 TiB | True         | Warning |            |"), "{text}");
        assert!(
            text.ends_with("WARNING:\n    No active connection to satellite 'n'.\n"),
            "{text}"
        );
        assert_eq!(text.matches("WARNING:").count(), 1);
    }

    #[test]
    fn providers_map_to_kinds() {
        let with = |d: &str| PoolWithDriver {
            opts: PoolOpts {
                shared_space: None,
                external_locking: false,
            },
            node_name: "n".into(),
            name: "p".into(),
            driver_pool_name: d.into(),
        };
        let (node, pool) = new_pool(StoragePoolCreate::Filethin(with("/srv")));
        assert_eq!(node, "n");
        assert_eq!(pool.provider_kind, ProviderKind::FileThin);
        assert_eq!(pool.driver_pool.as_deref(), Some("/srv"));
        let (_, pool) = new_pool(StoragePoolCreate::Lvmthin(with("vg/thin")));
        assert_eq!(pool.provider_kind, ProviderKind::LvmThin);
        let (_, pool) = new_pool(StoragePoolCreate::Diskless(PoolWithoutDriver {
            opts: PoolOpts {
                shared_space: Some("s".into()),
                external_locking: true,
            },
            node_name: "n".into(),
            name: "dl".into(),
        }));
        assert_eq!(pool.provider_kind, ProviderKind::Diskless);
        assert_eq!(pool.driver_pool, None);
        assert!(pool.external_locking);
    }
}
