//! Measurements taken at a checkpoint (an empty cluster, 1,000, 10,000 and the full count of
//! resource definitions): the controller's memory and the latency of its reads — the whole
//! resource view, pages of it, one definition — with `/health` as the floor of what a request
//! costs; and the floor of a cold start, reading the whole store with SQLite alone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::controller::ControllerUnderTest;
use crate::procfs::Memory;
use crate::stats::Summary;
use crate::workload;

/// Resources per page of `GET /v1/view/resources?limit=…&offset=…`.
pub const PAGE: usize = 1000;

/// One read endpoint, measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Endpoint {
    pub latency: Summary,
    pub bytes: usize,
}

/// How many requests a checkpoint sends per endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Requests per small answer: `/health` (at least 100), each page, the definition list;
    /// four times as many single definitions.
    pub samples: usize,
    /// Requests of the whole resource view (each one is the cluster's whole size).
    pub view_samples: usize,
}

/// One page of the resource view: which, and how it answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    pub offset: usize,
    pub endpoint: Endpoint,
}

/// What a checkpoint measured.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Resource definitions in the cluster.
    pub definitions_count: usize,
    pub memory: Memory,
    /// `GET /health`: the cost of any request (routing, middleware, a store ping).
    pub health: Endpoint,
    /// `GET /v1/view/resources` without paging parameters.
    pub view: Endpoint,
    /// `GET /v1/view/resources?limit=0` (0 means no limit in this API).
    pub view_limit0: Endpoint,
    /// `GET /v1/view/resources?limit=1000&offset=K`: the first, middle and last page (fewer
    /// when the cluster has fewer pages); empty without resources.
    pub pages: Vec<Page>,
    /// `GET /v1/resource-definitions`.
    pub definitions: Endpoint,
    /// `GET /v1/resource-definitions/{name}`, names spread over the whole cluster; `None`
    /// without resources.
    pub definition: Option<Endpoint>,
}

impl Checkpoint {
    /// The page at the start, the middle or the end of the view.
    pub fn page(&self, which: Which) -> Option<&Page> {
        match which {
            Which::First => self.pages.first(),
            Which::Middle => self.pages.get(self.pages.len() / 2),
            Which::Last => self.pages.last(),
        }
    }
}

/// A page by its place in the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    First,
    Middle,
    Last,
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

/// The offsets of the first, middle and last page of `resources` items, `PAGE` apiece.
pub fn page_offsets(resources: usize) -> Vec<usize> {
    if resources == 0 {
        return Vec::new();
    }
    let last = (resources - 1) / PAGE * PAGE;
    let middle = resources / 2 / PAGE * PAGE;
    let mut offsets = vec![0, middle, last];
    offsets.dedup();
    offsets
}

/// `count` definition names spread evenly over the first `definitions`.
fn spread_names(definitions: usize, count: usize) -> Vec<String> {
    // A stride coprime with most sizes walks the whole range in an order unlike the names'.
    (0..count)
        .map(|i| workload::resource_name((i * 7919 + 13) % definitions))
        .collect()
}

/// Measures the controller as it is, holding `definitions` resource definitions of two
/// replicas each.
pub fn checkpoint(
    controller: &ControllerUnderTest,
    sampling: Sampling,
    definitions: usize,
) -> Result<Checkpoint> {
    let samples = sampling.samples;
    let health = endpoint(controller, "/health", samples.max(100))?;
    let view = endpoint(controller, "/v1/view/resources", sampling.view_samples)?;
    let view_limit0 = endpoint(
        controller,
        "/v1/view/resources?limit=0",
        sampling.view_samples,
    )?;
    let mut pages = Vec::new();
    for offset in page_offsets(2 * definitions) {
        let path = format!("/v1/view/resources?limit={PAGE}&offset={offset}");
        pages.push(Page {
            offset,
            endpoint: endpoint(controller, &path, samples)?,
        });
    }
    let list = endpoint(controller, "/v1/resource-definitions", samples)?;
    let definition = if definitions == 0 {
        None
    } else {
        let reader = controller.reader();
        let paths: Vec<String> = spread_names(definitions, 4 * samples)
            .iter()
            .map(|name| format!("/v1/resource-definitions/{name}"))
            .collect();
        reader.get_ok(&paths[0])?;
        let (latencies, bytes) = reader.each(&paths)?;
        Some(Endpoint {
            latency: Summary::of(&latencies),
            bytes,
        })
    };
    Ok(Checkpoint {
        definitions_count: definitions,
        memory: controller.memory()?,
        health,
        view,
        view_limit0,
        pages,
        definitions: list,
        definition,
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

/// SQLite's `quick_check`, what the controller runs beside its load (the references the
/// foreign keys hold it checks in the graph it builds).
fn integrity_check(database: &Path) -> Result<()> {
    let connection = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let quick: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    anyhow::ensure!(quick == "ok", "quick_check: {quick}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_the_first_middle_and_last() {
        assert_eq!(page_offsets(0), Vec::<usize>::new());
        assert_eq!(page_offsets(1), [0]);
        assert_eq!(page_offsets(1000), [0]);
        assert_eq!(page_offsets(2000), [0, 1000]);
        assert_eq!(page_offsets(2001), [0, 1000, 2000]);
        assert_eq!(page_offsets(200_000), [0, 100_000, 199_000]);
    }

    #[test]
    fn names_spread_over_the_whole_cluster() {
        let names = spread_names(100_000, 200);
        assert_eq!(names.len(), 200);
        assert!(names.iter().any(|n| n.as_str() < "bench10000"));
        assert!(names.iter().any(|n| n.as_str() > "bench90000"));
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), 200);
        assert!(spread_names(1, 3).iter().all(|n| n == "bench00000"));
    }
}
