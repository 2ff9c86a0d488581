//! kill -9 the controller in the middle of a burst of mutations, restart it, and check that
//! every acknowledged mutation is there and nothing is half-made.
//!
//! Writers, one per kind of mutation, run concurrently:
//! - spawn resource definitions from a group (`definitions_only`): one request creates a
//!   definition and two volume definitions in one transaction, so a definition without both
//!   its volumes would be a half-made change;
//! - set controller properties;
//! - modify parents that have children: properties of resource definitions (which have volume
//!   definitions), of nodes (which have storage pools), of the resource group (which has volume
//!   groups, and whose description is rewritten too), and properties of volume definitions.
//!
//! The modifications are there because a store that carried out an update as delete-and-insert
//! (SQLite's `REPLACE`) with cascading foreign keys lost a parent's children on disk while
//! memory still had them: only a restart showed it. So after each kill the check verifies that
//! every definition still has both its volume definitions, every node both its pools, the group
//! both its volume groups, and that every acknowledged property value is present.
//!
//! A request counts as acknowledged when the controller answered 2xx; a request that was in
//! flight when the process died may or may not have landed, but if it did, it landed whole.
//! Each property write sets a key of its own, so every acknowledged one must be there with its
//! value; the group's description, which every write replaces, must be the last acknowledged
//! one or the one in flight.
//!
//! The nodes are AUXILIARY nodes: they have no satellite, so registering them does not wait for
//! one, and what is tested is the store alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrite_testkit::{Binaries, ControllerProcess, Rest};
use serde_json::{Value, json};

const ROUNDS: usize = 4;
const WRITERS: usize = 6;
const GROUP: &str = "crash_rg";
/// Definitions the modifying writers work on, spawned before the first burst.
const MODIFIED_DEFINITIONS: [&str; 2] = ["crash_mod_0", "crash_mod_1"];
const NODES: [&str; 2] = ["crash_node1", "crash_node2"];
/// Every node's pools: the one created here and the default diskless pool every node gets.
const NODE_POOLS: [&str; 2] = ["DfltDisklessStorPool", "crash_pool"];

/// What a writer works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Spawn,
    ControllerProps,
    ModifyDefinition,
    ModifyNode,
    ModifyGroup,
    ModifyVolumeDefinition,
}

impl Role {
    fn of(writer: usize) -> Role {
        match writer % WRITERS {
            0 => Role::Spawn,
            1 => Role::ControllerProps,
            2 => Role::ModifyDefinition,
            3 => Role::ModifyNode,
            4 => Role::ModifyGroup,
            _ => Role::ModifyVolumeDefinition,
        }
    }
}

/// An object whose properties the writers set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Definition(String),
    Node(String),
    Group,
    VolumeDefinition(String, i64),
}

impl Target {
    fn path(&self) -> String {
        match self {
            Target::Definition(name) => format!("/v1/resource-definitions/{name}"),
            Target::Node(name) => format!("/v1/nodes/{name}"),
            Target::Group => format!("/v1/resource-groups/{GROUP}"),
            Target::VolumeDefinition(name, number) => {
                format!("/v1/resource-definitions/{name}/volume-definitions/{number}")
            }
        }
    }
}

#[derive(Default)]
struct Acknowledged {
    definitions: BTreeSet<String>,
    controller_props: BTreeSet<String>,
    /// Properties set on parents and volume definitions: key and value, by object.
    props: BTreeMap<Target, BTreeMap<String, String>>,
    /// The group's description: the last acknowledged and the last sent.
    description_acknowledged: Option<String>,
    description_sent: Option<String>,
    /// Acknowledged requests by writer role.
    by_role: BTreeMap<Role, usize>,
}

fn writer(
    rest: Rest,
    id: usize,
    round: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acknowledged>>,
    attempts: Arc<AtomicUsize>,
) {
    let role = Role::of(id);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        attempts.fetch_add(1, Ordering::Relaxed);
        let key = format!("Aux/crash_{round}_{id}_{n}");
        let value = n.to_string();
        let props = json!({"override_props": {key.clone(): value.clone()}});
        // Creations are POSTs, modifications PUTs.
        let (path, body, target) = match role {
            Role::Spawn => {
                let name = format!("rd_{round}_{id}_{n}");
                let body = json!({
                    "resource_definition_name": name,
                    "volume_sizes": [1024, 2048],
                    "definitions_only": true
                });
                (format!("/v1/resource-groups/{GROUP}/spawn"), body, None)
            }
            Role::ControllerProps => ("/v1/controller/properties".to_string(), props, None),
            Role::ModifyDefinition => {
                // Alternately the fixed definitions and one spawned in an earlier burst.
                let spawned = acked.lock().unwrap().definitions.iter().nth(n).cloned();
                let name = match spawned {
                    Some(name) if n % 3 == 0 => name,
                    _ => MODIFIED_DEFINITIONS[n % 2].to_string(),
                };
                let target = Target::Definition(name);
                (target.path(), props, Some(target))
            }
            Role::ModifyNode => {
                let target = Target::Node(NODES[n % 2].to_string());
                (target.path(), props, Some(target))
            }
            Role::ModifyGroup => {
                let description = format!("crash round {round} request {n}");
                acked.lock().unwrap().description_sent = Some(description.clone());
                let body = json!({
                    "description": description,
                    "override_props": {key.clone(): value.clone()}
                });
                (Target::Group.path(), body, Some(Target::Group))
            }
            Role::ModifyVolumeDefinition => {
                let target = Target::VolumeDefinition(
                    MODIFIED_DEFINITIONS[n % 2].to_string(),
                    (n / 2 % 2) as i64,
                );
                (target.path(), props, Some(target))
            }
        };
        let reply = if target.is_some() {
            rest.put(&path, &body)
        } else {
            rest.post(&path, &body)
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(_) => return, // the controller died under us
        };
        if !(200..300).contains(&reply.status) || reply.has_error() {
            panic!(
                "{role:?} {path} {body} was refused: {} {}",
                reply.status, reply.json
            );
        }
        let mut acked = acked.lock().unwrap();
        *acked.by_role.entry(role).or_default() += 1;
        match (role, target) {
            (Role::Spawn, _) => {
                acked
                    .definitions
                    .insert(body["resource_definition_name"].as_str().unwrap().into());
            }
            (Role::ControllerProps, _) => {
                acked.controller_props.insert(key);
            }
            (_, Some(target)) => {
                if role == Role::ModifyGroup {
                    acked.description_acknowledged = body["description"].as_str().map(Into::into);
                }
                acked.props.entry(target).or_default().insert(key, value);
            }
            (_, None) => unreachable!("every modifying role has a target"),
        }
    }
}

fn setup(rest: &Rest) -> Result<()> {
    rest.post("/v1/resource-groups", &json!({"name": GROUP}))?
        .expect_success()?;
    for _ in 0..2 {
        rest.post(
            &format!("/v1/resource-groups/{GROUP}/volume-groups"),
            &json!({}),
        )?
        .expect_success()?;
    }
    for name in MODIFIED_DEFINITIONS {
        rest.post(
            &format!("/v1/resource-groups/{GROUP}/spawn"),
            &json!({"resource_definition_name": name, "volume_sizes": [1024, 2048], "definitions_only": true}),
        )?
        .expect_success()?;
    }
    for (i, node) in NODES.iter().enumerate() {
        rest.post(
            "/v1/nodes",
            &json!({"name": node, "type": "AUXILIARY",
                    "net_interfaces": [{"name": "default", "address": format!("127.0.0.{}", 100 + i)}]}),
        )?
        .expect_success()?;
        // Nothing can check the pool without a satellite; it is recorded with a warning.
        let reply = rest.post(
            &format!("/v1/nodes/{node}/storage-pools"),
            &json!({"storage_pool_name": "crash_pool", "provider_kind": "FILE_THIN",
                    "props": {"StorDriver/StorPoolName": "/nonexistent/crash_pool"}}),
        )?;
        if reply.status != 201 || reply.has_error() {
            bail!("storage pool on {node}: {} {}", reply.status, reply.json);
        }
    }
    Ok(())
}

#[test]
fn acknowledged_mutations_survive_kill_9() -> Result<()> {
    let binaries = Binaries::locate()?;
    let dir = tempfile::Builder::new()
        .prefix("ferrite-crash-")
        .tempdir()?;
    let mut controller = ControllerProcess::start(&binaries, dir.path())?;
    setup(&controller.rest())?;

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut total_attempts = 0;
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (rest, stop, acked, attempts) = (
                    controller.rest(),
                    stop.clone(),
                    acked.clone(),
                    attempts.clone(),
                );
                std::thread::spawn(move || writer(rest, id, round, stop, acked, attempts))
            })
            .collect();
        // Let the burst get going, then kill mid-flight at a varying moment.
        std::thread::sleep(Duration::from_millis(300 + 170 * round as u64));
        controller.kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("writer panicked");
        }
        total_attempts += attempts.load(Ordering::Relaxed);
        controller.restart()?;
        check(&controller.rest(), &acked.lock().unwrap())
            .with_context(|| format!("after the kill in round {round}"))?;
    }
    let acked = acked.lock().unwrap();
    let too_few: Vec<_> = [
        Role::Spawn,
        Role::ControllerProps,
        Role::ModifyDefinition,
        Role::ModifyNode,
        Role::ModifyGroup,
        Role::ModifyVolumeDefinition,
    ]
    .into_iter()
    .filter(|role| acked.by_role.get(role).copied().unwrap_or_default() <= 10)
    .collect();
    assert!(
        too_few.is_empty(),
        "the burst was too small to mean anything: {too_few:?} had 10 or fewer acknowledged requests ({:?}) of {total_attempts} attempts",
        acked.by_role
    );
    eprintln!(
        "{ROUNDS} kills: {:?} acknowledged of {total_attempts} requests sent; all present and whole",
        acked.by_role
    );
    Ok(())
}

fn check(rest: &Rest, acked: &Acknowledged) -> Result<()> {
    let mut found: BTreeMap<Target, Value> = BTreeMap::new();

    let definitions = rest
        .get("/v1/resource-definitions?with_volume_definitions=true")?
        .json;
    let mut present = BTreeSet::new();
    for rd in definitions.as_array().context("definitions are a list")? {
        let name = rd["name"]
            .as_str()
            .context("a definition has a name")?
            .to_string();
        let volumes: Vec<(i64, i64)> = rd["volume_definitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|vd| {
                let number = vd["volume_number"].as_i64().unwrap_or(-1);
                found.insert(
                    Target::VolumeDefinition(name.clone(), number),
                    vd["props"].clone(),
                );
                (number, vd["size_kib"].as_i64().unwrap_or(-1))
            })
            .collect();
        if volumes != vec![(0, 1024), (1, 2048)] {
            bail!(
                "resource definition {name} is half-made or lost volume definitions: {volumes:?}"
            );
        }
        found.insert(Target::Definition(name.clone()), rd["props"].clone());
        present.insert(name);
    }
    let missing: Vec<_> = acked
        .definitions
        .iter()
        .filter(|name| !present.contains(*name))
        .collect();
    if !missing.is_empty() {
        bail!("acknowledged resource definitions lost: {missing:?}");
    }
    for name in MODIFIED_DEFINITIONS {
        if !present.contains(name) {
            bail!("resource definition {name} lost");
        }
    }

    let pools = rest.get("/v1/view/storage-pools")?.json;
    for node in NODES {
        let mut names: Vec<&str> = pools
            .as_array()
            .context("pools are a list")?
            .iter()
            .filter(|p| p["node_name"] == node)
            .filter_map(|p| p["storage_pool_name"].as_str())
            .collect();
        names.sort_unstable();
        if names != NODE_POOLS {
            bail!("node {node} lost storage pools: it has {names:?}, not {NODE_POOLS:?}");
        }
        let reply = rest.get(&format!("/v1/nodes/{node}"))?;
        if reply.status != 200 {
            bail!("node {node} lost: {} {}", reply.status, reply.json);
        }
        found.insert(Target::Node(node.to_string()), reply.json["props"].clone());
    }

    let group = rest.get(&format!("/v1/resource-groups/{GROUP}"))?;
    if group.status != 200 {
        bail!(
            "resource group {GROUP} lost: {} {}",
            group.status,
            group.json
        );
    }
    found.insert(Target::Group, group.json["props"].clone());
    let volume_groups: Vec<i64> = rest
        .get(&format!("/v1/resource-groups/{GROUP}/volume-groups"))?
        .json
        .as_array()
        .context("volume groups are a list")?
        .iter()
        .filter_map(|vg| vg["volume_number"].as_i64())
        .collect();
    if volume_groups != [0, 1] {
        bail!("resource group {GROUP} lost volume groups: it has {volume_groups:?}");
    }
    let description = group.json["description"].as_str().map(str::to_string);
    if let Some(acknowledged) = &acked.description_acknowledged
        && description.as_ref() != Some(acknowledged)
        && description != acked.description_sent
    {
        bail!(
            "resource group {GROUP} has the description {description:?}, neither the acknowledged {acknowledged:?} nor the one in flight {:?}",
            acked.description_sent
        );
    }

    for (target, props) in &acked.props {
        let present = found
            .get(target)
            .with_context(|| format!("{target:?} is gone"))?;
        let lost: Vec<(&String, &String)> = props
            .iter()
            .filter(|(key, value)| present.get(key.as_str()).and_then(Value::as_str) != Some(value))
            .collect();
        if !lost.is_empty() {
            bail!(
                "{target:?} lost {} of {} acknowledged properties, e.g. {:?}",
                lost.len(),
                props.len(),
                &lost[..lost.len().min(5)]
            );
        }
    }

    let props = rest.get("/v1/controller/properties")?.json;
    let missing: Vec<_> = acked
        .controller_props
        .iter()
        .filter(|k| props.get(k.as_str()).is_none())
        .collect();
    if !missing.is_empty() {
        bail!("acknowledged controller properties lost: {missing:?}");
    }
    Ok(())
}
