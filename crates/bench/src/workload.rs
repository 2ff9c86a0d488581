//! What the benchmark asks of the controller, over REST the way LINSTOR clients ask it:
//! nodes with a storage pool each, a resource group with place count 2 on the STORAGE layer and a
//! volume group, then `POST /v1/resource-groups/{group}/spawn` per resource from a few
//! concurrent clients, and
//! `DELETE /v1/resource-definitions/{name}` to tear down.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferrite_testkit::{Reply, Rest};
use ferrite_types::RetCode;
use ferrite_types::api_call_rc::code;
use serde_json::json;

/// The resource group every benchmark resource is spawned from.
pub const RESOURCE_GROUP: &str = "bench_group";
/// The storage pool every node gets.
pub const STORAGE_POOL: &str = "bench_pool";

/// A node to register: its name, satellite address and FILE_THIN pool directory.
pub struct NodeSpec {
    pub name: String,
    pub address: SocketAddr,
    pub pool_dir: String,
}

/// Registers the nodes, gives each a FILE_THIN pool, and creates the resource group (place
/// count 2 in that pool) with one volume group.
pub fn set_up_cluster(rest: &Rest, nodes: &[NodeSpec]) -> Result<()> {
    for node in nodes {
        rest.post(
            "/v1/nodes",
            &json!({
                "name": node.name,
                "type": "combined",
                "net_interfaces": [{
                    "name": "default",
                    "address": node.address.ip().to_string(),
                    "satellite_port": node.address.port(),
                    "satellite_encryption_type": "plain",
                    "is_active": true
                }]
            }),
        )?
        .expect_success()
        .with_context(|| format!("creating node {}", node.name))?;
    }
    for node in nodes {
        rest.post(
            &format!("/v1/nodes/{}/storage-pools", node.name),
            &json!({
                "storage_pool_name": STORAGE_POOL,
                "provider_kind": "FILE_THIN",
                "props": {"StorDriver/StorPoolName": node.pool_dir}
            }),
        )?
        .expect_success()
        .with_context(|| format!("creating the storage pool of {}", node.name))?;
    }
    rest.post(
        "/v1/resource-groups",
        // The layers are named: left to the default, a node whose satellite finds a
        // `ferrite-mirrord` beside it gets MIRROR (a daemon, a FUSE file, a second loop device
        // and a tiebreaker per resource), so what is measured would depend on which binaries
        // happen to be in the directory. The control plane's speed is measured on STORAGE.
        &json!({"name": RESOURCE_GROUP, "select_filter": {"place_count": 2, "storage_pool_list": [STORAGE_POOL], "layer_stack": ["STORAGE"]}}),
    )?
    .expect_success()
    .context("creating the resource group")?;
    rest.post(
        &format!("/v1/resource-groups/{RESOURCE_GROUP}/volume-groups"),
        &json!({}),
    )?
    .expect_success()
    .context("creating the volume group")?;
    Ok(())
}

/// The name of the `index`th benchmark resource.
pub fn resource_name(index: usize) -> String {
    format!("bench{index:05}")
}

/// What a batch of requests did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Requests answered (fewer than asked for when the deadline passed).
    pub requests: usize,
    pub clients: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Answers with a warning that a satellite did not confirm in time or was offline.
    pub unconfirmed: usize,
}

impl Batch {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A warning saying the change is recorded but a satellite has not confirmed it.
fn unconfirmed(reply: &Reply) -> bool {
    reply.entries().iter().any(|entry| {
        entry["ret_code"].as_i64().is_some_and(|rc| {
            let rc = RetCode::new(rc as u64);
            rc.is_warning()
                && [code::WARN_STLT_NOT_UPDATED, code::WARN_NOT_CONNECTED].contains(&rc.code())
        })
    })
}

/// Runs `request(index)` for every index in `indices` from `clients` threads; each thread takes
/// the next index when its request is answered, and none is sent after `deadline`.
fn run_batch(
    clients: usize,
    indices: std::ops::Range<usize>,
    deadline: Option<Instant>,
    request: impl Fn(&Rest, usize) -> Result<Reply> + Sync,
    rest: &Rest,
) -> Result<Batch> {
    let next = AtomicUsize::new(indices.start);
    let latencies = Mutex::new(Vec::with_capacity(indices.len()));
    let unconfirmed_count = AtomicUsize::new(0);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let rest = rest.clone();
                let mut mine = Vec::new();
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= indices.end || failure.lock().expect("failure").is_some() {
                        break;
                    }
                    let sent = Instant::now();
                    let answer = request(&rest, index).and_then(|reply| {
                        reply.expect_success()?;
                        Ok(reply)
                    });
                    match answer {
                        Ok(reply) => {
                            mine.push(sent.elapsed());
                            if unconfirmed(&reply) {
                                unconfirmed_count.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            *failure.lock().expect("failure") =
                                Some(e.context(format!("request for {}", resource_name(index))));
                            break;
                        }
                    }
                }
                latencies.lock().expect("latencies").extend(mine);
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("failure") {
        return Err(e);
    }
    let latencies = latencies.into_inner().expect("latencies");
    Ok(Batch {
        requests: latencies.len(),
        clients,
        elapsed: started.elapsed(),
        latencies,
        unconfirmed: unconfirmed_count.into_inner(),
    })
}

/// Spawns resources `indices` (one volume of `size_kib` each) from `clients` threads, sending
/// none after `deadline`.
pub fn spawn_resources(
    rest: &Rest,
    indices: std::ops::Range<usize>,
    clients: usize,
    size_kib: u64,
    deadline: Option<Instant>,
) -> Result<Batch> {
    run_batch(
        clients,
        indices,
        deadline,
        |rest, index| {
            rest.post(
                &format!("/v1/resource-groups/{RESOURCE_GROUP}/spawn"),
                &json!({
                    "resource_definition_name": resource_name(index),
                    "volume_sizes": [size_kib],
                    "partial": false,
                    "definitions_only": false,
                    "select_filter": {}
                }),
            )
        },
        rest,
    )
}

/// Deletes resource definitions `indices` (and with them their resources), sending none after
/// `deadline`.
pub fn delete_resources(
    rest: &Rest,
    indices: std::ops::Range<usize>,
    clients: usize,
    deadline: Option<Instant>,
) -> Result<Batch> {
    run_batch(
        clients,
        indices,
        deadline,
        |rest, index| {
            rest.delete(&format!(
                "/v1/resource-definitions/{}",
                resource_name(index)
            ))
        },
        rest,
    )
}

/// What `GET /v1/view/resources` says about the replicas.
#[derive(Debug, Default)]
pub struct Replicas {
    /// Replicas per node, by node name.
    pub per_node: Vec<(String, usize)>,
    /// Volumes whose disk state is not UpToDate.
    pub not_up_to_date: usize,
}

/// The fields of one resource of the view that [`Replicas`] reads; decoding only these keeps
/// the benchmark's own memory small next to a view of 200,000 resources.
#[derive(serde::Deserialize)]
struct ViewedResource {
    node_name: String,
    #[serde(default)]
    volumes: Vec<ViewedVolume>,
}

#[derive(serde::Deserialize)]
struct ViewedVolume {
    #[serde(default)]
    state: ViewedVolumeState,
}

#[derive(serde::Deserialize, Default)]
struct ViewedVolumeState {
    #[serde(default)]
    disk_state: Option<String>,
}

impl Replicas {
    pub fn of(view: &[u8]) -> Result<Replicas> {
        let list: Vec<ViewedResource> = serde_json::from_slice(view)
            .context("/v1/view/resources is not a list of resources")?;
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        let mut not_up_to_date = 0;
        for resource in list {
            *counts.entry(resource.node_name).or_default() += 1;
            not_up_to_date += resource
                .volumes
                .iter()
                .filter(|v| v.state.disk_state.as_deref() != Some("UpToDate"))
                .count();
        }
        Ok(Replicas {
            per_node: counts.into_iter().collect(),
            not_up_to_date,
        })
    }

    pub fn total(&self) -> usize {
        self.per_node.iter().map(|(_, n)| n).sum()
    }

    /// "node1 250, node2 250, ...".
    pub fn spread(&self) -> String {
        self.per_node
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
