//! Measurements taken at a checkpoint (an empty cluster, 1,000 resources, 10,000 resources):
//! the controller's memory and the latency of its reads, with `/health` as the floor of what a
//! request costs; and the floor of a cold start, reading the whole store with SQLite alone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::controller::ControllerUnderTest;
use crate::procfs::Memory;
use crate::stats::Summary;

/// One read endpoint, measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Endpoint {
    pub latency: Summary,
    pub bytes: usize,
}

/// What a checkpoint measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checkpoint {
    pub memory: Memory,
    /// `GET /health`: the cost of any request (routing, middleware, a store ping).
    pub health: Endpoint,
    /// `GET /v1/view/resources` without paging parameters.
    pub view: Endpoint,
    /// `GET /v1/view/resources?limit=0` (0 means no limit in this API).
    pub view_limit0: Endpoint,
    /// `GET /v1/resource-definitions`.
    pub definitions: Endpoint,
}

fn endpoint(controller: &ControllerUnderTest, path: &str, samples: usize) -> Result<Endpoint> {
    let reader = controller.reader();
    // One request first, so the connection is open and the page cache is warm.
    reader.get_ok(path)?;
    let (latencies, bytes) = reader.repeat(path, samples)?;
    Ok(Endpoint {
        latency: Summary::of(&latencies),
        bytes,
    })
}

/// Measures the controller as it is: `samples` sequential requests per endpoint.
pub fn checkpoint(controller: &ControllerUnderTest, samples: usize) -> Result<Checkpoint> {
    let health = endpoint(controller, "/health", samples.max(100))?;
    let view = endpoint(controller, "/v1/view/resources", samples)?;
    let view_limit0 = endpoint(controller, "/v1/view/resources?limit=0", samples)?;
    let definitions = endpoint(controller, "/v1/resource-definitions", samples)?;
    Ok(Checkpoint {
        memory: controller.memory()?,
        health,
        view,
        view_limit0,
        definitions,
    })
}

/// What SQLite alone needs for the controller's database.
#[derive(Debug, Clone, Copy)]
pub struct StoreFloor {
    /// Open the file and read every row of every table, as the controller's load does, without
    /// decoding the JSON or building the graph.
    pub read_rows: Summary,
    /// `PRAGMA quick_check` and `PRAGMA foreign_key_check`, which the controller runs at start.
    pub integrity_check: Summary,
    pub rows: usize,
    pub file_bytes: u64,
}

const TABLES: &[(&str, &str)] = &[
    ("controller_props", "key"),
    ("nodes", "name"),
    ("storage_pools", "node, name"),
    ("resource_groups", "name"),
    ("volume_groups", "resource_group, volume_number"),
    ("resource_definitions", "name"),
    ("volume_definitions", "resource, volume_number"),
    ("resources", "resource, node"),
    ("error_reports", "id"),
];

fn read_all_rows(database: &Path) -> Result<usize> {
    let connection = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut rows = 0;
    for (table, keys) in TABLES {
        let mut statement =
            connection.prepare(&format!("SELECT {keys}, data FROM {table} ORDER BY {keys}"))?;
        let width = keys.split(',').count();
        let mut result = statement.query([])?;
        while let Some(row) = result.next()? {
            for i in 0..width {
                let _: rusqlite::types::Value = row.get(i)?;
            }
            let data: String = row.get(width)?;
            std::hint::black_box(data);
            rows += 1;
        }
    }
    Ok(rows)
}

fn integrity_check(database: &Path) -> Result<()> {
    let connection = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let quick: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    anyhow::ensure!(quick == "ok", "quick_check: {quick}");
    let mut statement = connection.prepare("PRAGMA foreign_key_check")?;
    let orphans = statement.query_map([], |_| Ok(()))?.count();
    anyhow::ensure!(orphans == 0, "{orphans} orphan rows");
    Ok(())
}

/// Measures the store floor `repeats` times on the controller's database (the controller
/// should be stopped, so nothing else touches the file).
pub fn store_floor(data_dir: &Path, repeats: usize) -> Result<StoreFloor> {
    let database = data_dir.join("ferrite.db");
    let mut reads = Vec::new();
    let mut checks = Vec::new();
    let mut rows = 0;
    for _ in 0..repeats {
        let started = Instant::now();
        rows = read_all_rows(&database).context("reading the store with SQLite")?;
        reads.push(started.elapsed());
        let started = Instant::now();
        integrity_check(&database).context("checking the store with SQLite")?;
        checks.push(started.elapsed());
    }
    let file_bytes = ["ferrite.db", "ferrite.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    Ok(StoreFloor {
        read_rows: Summary::of(&reads),
        integrity_check: Summary::of(&checks),
        rows,
        file_bytes,
    })
}

/// Sleeps until the controller has been quiet for a moment, so a measurement does not overlap
/// the tail of the previous phase (satellite reports, WAL checkpoints).
pub fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}
