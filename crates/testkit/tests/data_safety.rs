//! Data safety under faults, with real processes: a controller, real satellites, FILE and
//! FILE_THIN pools whose volumes are loop devices, and known data in every volume.
//!
//! Each scenario writes a self-describing pattern (`ferrite_testkit::data`) through the loop
//! device each volume report names, causes one fault (a restart after a modification, a second
//! controller, a stale or restored store, an unmounted pool, a node offline during a deletion,
//! a lost node registered again, a full thick pool, an offline replica, a name differing only in
//! case), and ends by checking that every volume that should exist holds every byte it was
//! given, that nothing that should be kept was deleted, and that what should be gone is gone.
//! Every refusal is checked for a clear answer: HTTP status, ret_code, message, cause and
//! correction.
//!
//! The scenarios need root (loop devices, mounts); without it they are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ferrite_testkit::data::{Pattern, find_block_of, is_all_zero};
use ferrite_testkit::mount::MountedImage;
use ferrite_testkit::{Cluster, ClusterState, Reply, Rest, free_port, is_root, wait_until};
use ferrite_types::api_call_rc::code;
use serde_json::{Value, json};

/// Every volume is this big unless a scenario says otherwise: 4 MiB, written and read whole.
const VOLUME_KIB: u64 = 4096;
/// How long a volume, a node or a deletion may take to get where it is going.
const SETTLE: Duration = Duration::from_secs(20);
/// The FILE_THIN pool every node of [`Cluster::register_nodes_with_pool`] gets.
const POOL: &str = "pool";

fn skipped() -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "skipped: the satellites attach loop devices and the tests mount file systems, which needs root (CI runs as root)"
    );
    true
}

/// A cluster whose satellites run no replication engine: these scenarios are about the
/// controller's store and the satellites' storage, so a definition without a layer list gets
/// STORAGE alone, and each volume is its backing volume (`mirror_data.rs` covers replicated
/// volumes).
fn storage_only(nodes: usize, args: &[&str]) -> Cluster {
    let mut args = args.to_vec();
    args.extend(["--mirrord", "/nonexistent/ferrite-mirrord"]);
    Cluster::start_with(nodes, &args).expect("the cluster starts")
}

/// Runs a scenario's checks on its cluster. A failure panics while the cluster is alive, so
/// that its drop prints the last lines of the controller's and every satellite's log.
fn run(mut cluster: Cluster, checks: impl FnOnce(&mut Cluster) -> Result<()>) {
    if let Err(error) = checks(&mut cluster) {
        panic!("{error:?}");
    }
}

/// Prints how long a scenario took, however it ends.
struct Timer(&'static str, Instant);

impl Timer {
    fn start(name: &'static str) -> Timer {
        Timer(name, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!(
            "data_safety::{}: {:.1} s",
            self.0,
            self.1.elapsed().as_secs_f64()
        );
    }
}

// ---- requests -------------------------------------------------------------------------------

/// Creates a resource definition with one volume definition per size.
fn create_definition(rest: &Rest, name: &str, sizes_kib: &[u64]) -> Result<()> {
    rest.post(
        "/v1/resource-definitions",
        &json!({"resource_definition": {"name": name}}),
    )?
    .expect_success()
    .with_context(|| format!("creating resource definition {name}"))?;
    for size in sizes_kib {
        rest.post(
            &format!("/v1/resource-definitions/{name}/volume-definitions"),
            &json!({"volume_definition": {"size_kib": size}}),
        )?
        .expect_success()
        .with_context(|| format!("creating a volume definition of {name}"))?;
    }
    Ok(())
}

/// `POST .../resources` placing `resource` on `node` in storage pool `pool`.
fn place(rest: &Rest, resource: &str, node: &str, pool: &str) -> Result<Reply> {
    rest.post(
        &format!("/v1/resource-definitions/{resource}/resources"),
        &json!([{"resource": {"node_name": node, "props": {"StorPoolName": pool}}}]),
    )
}

/// The resources of one definition as `GET /v1/view/resources` shows them.
fn resources_of(rest: &Rest, resource: &str) -> Result<Vec<Value>> {
    let reply = rest.get(&format!("/v1/view/resources?resources={resource}"))?;
    ensure!(reply.status == 200, "view resources: {}", reply.json);
    Ok(reply.json.as_array().cloned().unwrap_or_default())
}

/// Volume `number` of `resource` on `node`, if the view lists it.
fn volume_of(rest: &Rest, resource: &str, node: &str, number: u16) -> Result<Option<Value>> {
    Ok(resources_of(rest, resource)?
        .into_iter()
        .find(|r| r["node_name"] == node)
        .and_then(|r| {
            r["volumes"]
                .as_array()?
                .iter()
                .find(|v| v["volume_number"] == number)
                .cloned()
        }))
}

fn disk_state(volume: &Value) -> &str {
    volume["state"]["disk_state"].as_str().unwrap_or_default()
}

/// The messages of a volume's reports (why it failed).
fn volume_errors(volume: &Value) -> String {
    volume["reports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"].as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Waits until volume `number` of `resource` on `node` is in `state`; returns the volume.
fn wait_disk_state(
    rest: &Rest,
    resource: &str,
    node: &str,
    number: u16,
    state: &str,
) -> Result<Value> {
    let mut last = Value::Null;
    wait_until(SETTLE, || {
        last = volume_of(rest, resource, node, number)?.unwrap_or(Value::Null);
        Ok(disk_state(&last) == state)
    })
    .with_context(|| {
        format!("waiting for {resource}/{number} on {node} to be {state}; last seen: {last}")
    })?;
    Ok(last)
}

fn node_status(rest: &Rest, node: &str) -> Result<String> {
    let reply = rest.get(&format!("/v1/nodes/{node}"))?;
    ensure!(reply.status == 200, "GET node {node}: {}", reply.json);
    Ok(reply.json["connection_status"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn wait_node_status(rest: &Rest, node: &str, status: &str) -> Result<()> {
    let mut last = String::new();
    wait_until(SETTLE, || {
        last = node_status(rest, node)?;
        Ok(last == status)
    })
    .with_context(|| format!("waiting for node {node} to be {status}; it is {last}"))
}

fn definition_names(rest: &Rest) -> Result<BTreeSet<String>> {
    let reply = rest.get("/v1/resource-definitions")?;
    ensure!(reply.status == 200, "list definitions: {}", reply.json);
    Ok(reply
        .json
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect())
}

fn orphans(rest: &Rest) -> Result<Vec<Value>> {
    let reply = rest.get("/v1/view/orphans")?;
    ensure!(reply.status == 200, "view orphans: {}", reply.json);
    Ok(reply.json.as_array().cloned().unwrap_or_default())
}

/// Starts a killed satellite again and has the controller connect to it at once (instead of
/// after its reconnect backoff); waits until the node is `status`.
fn bring_back(cluster: &mut Cluster, node: &str, status: &str) -> Result<()> {
    cluster.satellite_mut(node).restart()?;
    let rest = cluster.rest();
    rest.put(&format!("/v1/nodes/{node}/reconnect"), &json!(null))?
        .expect_success()?;
    wait_node_status(&rest, node, status)
}

/// Kills a node's satellite and waits until the controller sees it OFFLINE.
fn take_down(cluster: &mut Cluster, node: &str) -> Result<()> {
    cluster.satellite_mut(node).kill();
    wait_node_status(&cluster.rest(), node, "OFFLINE")
}

// ---- answers --------------------------------------------------------------------------------

/// The two top bits of a ret_code: 3 error, 2 warning, 0 success.
fn severity(entry: &Value) -> u64 {
    entry["ret_code"].as_i64().map_or(0, |rc| (rc as u64) >> 62)
}

fn low_code(entry: &Value) -> u64 {
    entry["ret_code"]
        .as_i64()
        .map_or(0, |rc| rc as u64 & 0x7FFF)
}

fn text<'a>(entry: &'a Value, field: &str) -> &'a str {
    entry[field].as_str().unwrap_or_default()
}

/// Checks a refusal: HTTP `status`, an error entry with `expected` in its low bits whose
/// message contains `message`, and a cause and a correction. Returns the entry.
/// One side of a race: the name and its answer.
type Answered = (&'static str, Reply);

/// Makes `call` for both names at once (released together by a barrier): exactly one may
/// succeed. The winner and the loser, each with its answer.
fn exactly_one_wins(
    what: &str,
    names: [&'static str; 2],
    call: impl Fn(&'static str) -> Result<Reply> + Clone + Send + 'static,
) -> Result<(Answered, Answered)> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = names
        .into_iter()
        .map(|name| {
            let barrier = barrier.clone();
            let call = call.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (name, call(name))
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for handle in handles {
        let (name, reply) = handle.join().expect("thread");
        let reply = reply?;
        if reply.has_error() {
            lost.push((name, reply));
        } else {
            won.push((name, reply));
        }
    }
    let answers = |side: &[(&str, Reply)]| {
        side.iter()
            .map(|(name, reply)| (name.to_string(), reply.json.clone()))
            .collect::<Vec<_>>()
    };
    ensure!(
        won.len() == 1 && lost.len() == 1,
        "exactly one {what} may succeed: succeeded {:?}, refused {:?}",
        answers(&won),
        answers(&lost)
    );
    Ok((won.remove(0), lost.remove(0)))
}

fn expect_refusal(reply: &Reply, status: u16, expected: u64, message: &str) -> Result<Value> {
    ensure!(
        reply.status == status,
        "expected HTTP {status}, got {}: {}",
        reply.status,
        reply.json
    );
    let entry = reply
        .entries()
        .into_iter()
        .find(|e| severity(e) == 3)
        .with_context(|| format!("no error entry in {}", reply.json))?
        .clone();
    ensure!(
        low_code(&entry) == expected,
        "expected ret_code {expected}, got {}: {entry}",
        low_code(&entry)
    );
    ensure!(
        text(&entry, "message").contains(message),
        "the message should say '{message}': {entry}"
    );
    ensure!(!text(&entry, "cause").is_empty(), "no cause in {entry}");
    ensure!(
        !text(&entry, "correction").is_empty(),
        "no correction in {entry}"
    );
    Ok(entry)
}

/// Checks an accepted request that says something did not happen yet: 2xx, no error, and a
/// warning with `expected` in its low bits whose message contains `message`, with a cause and
/// a correction. Returns that warning (there may be others).
fn expect_warning(reply: &Reply, expected: u64, message: &str) -> Result<Value> {
    reply.expect_success()?;
    let entry = reply
        .entries()
        .into_iter()
        .find(|e| {
            severity(e) == 2 && low_code(e) == expected && text(e, "message").contains(message)
        })
        .with_context(|| format!("no warning {expected} saying '{message}' in {}", reply.json))?
        .clone();
    ensure!(!text(&entry, "cause").is_empty(), "no cause in {entry}");
    ensure!(
        !text(&entry, "correction").is_empty(),
        "no correction in {entry}"
    );
    Ok(entry)
}

/// Fails if the answer carries any warning or error (an INFO note, such as which layer stack
/// a definition got, is neither).
fn expect_clean(reply: &Reply) -> Result<()> {
    reply.expect_success()?;
    let noisy: Vec<&Value> = reply
        .entries()
        .into_iter()
        .filter(|e| severity(e) >= 2)
        .collect();
    ensure!(noisy.is_empty(), "unexpected warnings: {noisy:?}");
    Ok(())
}

// ---- data -----------------------------------------------------------------------------------

/// The backing file of volume `number` of `resource` in a FILE or FILE_THIN pool directory
/// (names are case-folded on disk).
fn image(pool_dir: &Path, resource: &str, number: u16) -> PathBuf {
    pool_dir.join(format!("{}_{number:05}.img", resource.to_ascii_lowercase()))
}

/// A volume and the data a test put into it.
#[derive(Debug, Clone)]
struct Replica {
    resource: String,
    node: String,
    number: u16,
    file: PathBuf,
    pattern: Pattern,
}

impl Replica {
    /// Every byte of the backing file is the pattern's.
    fn verify(&self) -> Result<()> {
        self.pattern.verify(&self.file).with_context(|| {
            format!(
                "{}/{} on {} lost data",
                self.resource, self.number, self.node
            )
        })
    }
}

/// Waits until the volume is UpToDate, writes a pattern through the loop device its report
/// names, and checks it arrived in the backing file in `pool_dir`.
fn fill(
    rest: &Rest,
    resource: &str,
    node: &str,
    number: u16,
    pool_dir: &Path,
    size_kib: u64,
) -> Result<Replica> {
    let volume = wait_disk_state(rest, resource, node, number, "UpToDate")?;
    let device = volume["device_path"]
        .as_str()
        .filter(|p| p.starts_with("/dev/loop"))
        .with_context(|| format!("no loop device in {volume}"))?;
    let file = image(pool_dir, resource, number);
    ensure!(
        is_all_zero(&file)?,
        "a new volume must be empty: {}",
        file.display()
    );
    let pattern = Pattern::for_volume(&format!("{resource}@{node}/{number}"), size_kib);
    pattern.write(Path::new(device))?;
    let replica = Replica {
        resource: resource.to_string(),
        node: node.to_string(),
        number,
        file,
        pattern,
    };
    replica.verify().context("right after writing it")?;
    Ok(replica)
}

/// Checks every replica, reporting all that fail.
fn verify_all(replicas: &[Replica]) -> Result<()> {
    let failures: Vec<String> = replicas
        .iter()
        .filter_map(|r| r.verify().err().map(|e| format!("{e:#}")))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} of {} volumes lost data:\n  {}",
            failures.len(),
            replicas.len(),
            failures.join("\n  ")
        )
    }
}

/// The names in a directory.
fn entries(dir: &Path) -> Result<BTreeSet<String>> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Waits until `needle` appears `passes` more times in a satellite's log: that many reconcile
/// passes saw what it describes.
fn wait_for_passes(log: &Path, needle: &str, passes: usize) -> Result<()> {
    let start = occurrences(log, needle);
    wait_until(SETTLE, || Ok(occurrences(log, needle) >= start + passes))
        .with_context(|| format!("waiting for {passes} passes logging '{needle}'"))
}

/// How many times `needle` occurs in a file (a log).
fn occurrences(file: &Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

// ---- 1. modifications of parents, each followed by a restart --------------------------------

/// The issue: setting a property on a parent (node, definition, group, pool, ...) deleted its
/// children on disk, which showed only after a restart. Every modification is followed by a
/// restart of the controller, SIGTERM and kill -9 in turn; after each, every pool, definition,
/// resource and backing file is still there, with its data.
#[test]
fn modifying_parents_then_restarting_keeps_every_object_and_every_byte() {
    if skipped() {
        return;
    }
    let _timer =
        Timer::start("modifying_parents_then_restarting_keeps_every_object_and_every_byte");
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        rest.post(
        "/v1/resource-groups",
        &json!({"name": "rg", "select_filter": {"place_count": 2, "storage_pool_list": [POOL]}}),
    )?
    .expect_success()?;
        rest.post("/v1/resource-groups/rg/volume-groups", &json!({}))?
            .expect_success()?;
        rest.post(
            "/v1/resource-groups/rg/spawn",
            &json!({"resource_definition_name": "rd", "volume_sizes": [VOLUME_KIB]}),
        )?
        .expect_success()?;
        // A second volume definition, added to the definition afterwards.
        rest.post(
            "/v1/resource-definitions/rd/volume-definitions",
            &json!({"volume_definition": {"size_kib": VOLUME_KIB}}),
        )?
        .expect_success()?;
        let mut replicas = Vec::new();
        for node in ["node1", "node2"] {
            for number in [0, 1] {
                replicas.push(fill(
                    &rest,
                    "rd",
                    node,
                    number,
                    &cluster.pool_dir(node),
                    VOLUME_KIB,
                )?);
            }
        }
        let expected_objects = [
            "nodes/node1/storage-pools/pool",
            "nodes/node2/storage-pools/pool",
            "resource-groups/rg/volume-groups/0",
            "resource-definitions/rd/volume-definitions/0",
            "resource-definitions/rd/volume-definitions/1",
            "resource-definitions/rd/resources/node1/volumes/0",
            "resource-definitions/rd/resources/node1/volumes/1",
            "resource-definitions/rd/resources/node2/volumes/0",
            "resource-definitions/rd/resources/node2/volumes/1",
        ];

        let props = |value: &str| json!({"override_props": {"Aux/x": value}});
        let modifications: [(&str, &str); 7] = [
            ("node", "/v1/nodes/node1"),
            ("resource definition", "/v1/resource-definitions/rd"),
            ("resource group", "/v1/resource-groups/rg"),
            ("volume group", "/v1/resource-groups/rg/volume-groups/0"),
            ("storage pool", "/v1/nodes/node1/storage-pools/pool"),
            ("resource", "/v1/resource-definitions/rd/resources/node1"),
            (
                "volume definition",
                "/v1/resource-definitions/rd/volume-definitions/0",
            ),
        ];
        for (step, (what, path)) in modifications.iter().enumerate() {
            let reply = rest.put(path, &props(&step.to_string()))?;
            expect_clean(&reply).with_context(|| format!("{what} modify"))?;
            let before = ClusterState::capture_settled(&rest, SETTLE)?;
            let crash = step % 2 == 1;
            if crash {
                cluster.controller.restart()?;
            } else {
                cluster.controller.restart_clean()?;
            }
            let how = if crash { "kill -9" } else { "SIGTERM" };
            let context = || format!("after the {what} modify and a restart ({how})");
            let reloaded = ClusterState::capture(&rest)?;
            before
                .expect_same(&reloaded, "the reloaded state differs")
                .with_context(context)?;
            for object in expected_objects {
                ensure!(
                    reloaded.get(object).is_some(),
                    "{}: {object} is gone",
                    context()
                );
            }
            ensure!(
                reloaded
                    .get(path.trim_start_matches("/v1/"))
                    .is_some_and(
                        |o| o["props"]["Aux/x"].as_str() == Some(step.to_string().as_str())
                    ),
                "{}: the property set on {path} is not there",
                context()
            );
            cluster.wait_online(SETTLE).with_context(context)?;
            for replica in &replicas {
                wait_disk_state(&rest, "rd", &replica.node, replica.number, "UpToDate")
                    .with_context(context)?;
            }
            verify_all(&replicas).with_context(context)?;
            for node in ["node1", "node2"] {
                ensure!(
                    entries(&cluster.pool_dir(node))?
                        == names(&[".ferrite-pool", "rd_00000.img", "rd_00001.img"]),
                    "{}: unexpected files in {node}'s pool",
                    context()
                );
            }
        }
        ensure!(orphans(&rest)?.is_empty(), "no volume may become an orphan");
        Ok(())
    });
}

/// What the controller logs when a node's `Welcome` showed that it holds the full state.
const STAMP_ONLY: &str = "the satellite holds the full state; sent its stamp only";

/// How many times the controller's `log` says it sent `node` only the stamp.
fn stamps_sent(log: &Path, node: &str) -> usize {
    let link = format!("satellite{{node={node}}}");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&link) && line.contains(STAMP_ONLY))
        .count()
}

/// A restarted controller sends a node that holds its whole state only the new stamp
/// (`ApplySameState`, after the node's `Welcome` gave the digest of what it holds), SIGTERM and
/// kill -9 alike; a node whose state differs from the controller's (one that was down while a
/// volume was added) gets the whole state, and creates the volume. Every byte stays.
#[test]
fn a_node_holding_the_controllers_state_is_sent_only_its_stamp() {
    if skipped() {
        return;
    }
    let _timer = Timer::start("a_node_holding_the_controllers_state_is_sent_only_its_stamp");
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        create_definition(&rest, "rd", &[VOLUME_KIB])?;
        let mut replicas = Vec::new();
        for node in ["node1", "node2"] {
            expect_clean(&place(&rest, "rd", node, POOL)?)?;
            replicas.push(fill(
                &rest,
                "rd",
                node,
                0,
                &cluster.pool_dir(node),
                VOLUME_KIB,
            )?);
        }
        for crash in [false, true] {
            if crash {
                cluster.controller.restart()?;
            } else {
                cluster.controller.restart_clean()?;
            }
            let context = || format!("after a restart (kill -9: {crash})");
            cluster.wait_online(SETTLE).with_context(context)?;
            let log = cluster.controller.current_log();
            wait_until(SETTLE, || {
                Ok(stamps_sent(&log, "node1") >= 1 && stamps_sent(&log, "node2") >= 1)
            })
            .with_context(|| format!("both nodes sent their stamp only; see {}", log.display()))
            .with_context(context)?;
            for node in ["node1", "node2"] {
                wait_disk_state(&rest, "rd", node, 0, "UpToDate").with_context(context)?;
            }
            verify_all(&replicas).with_context(context)?;
        }

        // node2 is down while a volume is added: what it holds is no longer the controller's
        // state for it, so it is sent the whole state when it comes back. (node1 may be sent
        // its stamp again meanwhile, if its connection drops on a busy machine.)
        take_down(cluster, "node2")?;
        rest.post(
            "/v1/resource-definitions/rd/volume-definitions",
            &json!({"volume_definition": {"size_kib": VOLUME_KIB}}),
        )?
        .expect_success()?;
        let log = cluster.controller.current_log();
        let stamps_before = stamps_sent(&log, "node2");
        bring_back(cluster, "node2", "ONLINE")?;
        replicas.push(fill(
            &rest,
            "rd",
            "node2",
            1,
            &cluster.pool_dir("node2"),
            VOLUME_KIB,
        )?);
        ensure!(
            stamps_sent(&log, "node2") == stamps_before,
            "node2's state differs from the controller's, yet it was sent only a stamp"
        );
        verify_all(&replicas)
    });
}

// ---- 2. a second controller on the same data directory ---------------------------------------

/// The store's revision, read with the sqlite3 tool (the store is in WAL mode, so a reader
/// does not disturb the controller).
fn store_revision(db: &Path) -> Result<u64> {
    let output = std::process::Command::new("sqlite3")
        .arg(db)
        .arg("select value from meta where key='revision'")
        .output()
        .context("running sqlite3")?;
    ensure!(
        output.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("parsing the revision")
}

/// The bytes of the files in `dir` whose names start with `prefix`, to show they did not
/// change.
fn snapshot_files(dir: &Path, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for name in entries(dir)? {
        if name.starts_with(prefix) {
            files.push((name.clone(), std::fs::read(dir.join(&name))?));
        }
    }
    Ok(files)
}

/// A second controller started on a data directory in use exits at once, nonzero, naming the
/// holder's pid; it touches neither the store nor any satellite, and the first keeps working
/// with revisions that go on counting from its own.
#[test]
fn a_second_controller_on_the_same_data_directory_is_refused_and_touches_nothing() {
    if skipped() {
        return;
    }
    let _timer = Timer::start(
        "a_second_controller_on_the_same_data_directory_is_refused_and_touches_nothing",
    );
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        create_definition(&rest, "web", &[VOLUME_KIB])?;
        let mut replicas = Vec::new();
        for node in ["node1", "node2"] {
            expect_clean(&place(&rest, "web", node, POOL)?)?;
            replicas.push(fill(
                &rest,
                "web",
                node,
                0,
                &cluster.pool_dir(node),
                VOLUME_KIB,
            )?);
        }
        let data_dir = cluster.controller.data_dir.clone();
        let db = data_dir.join("ferrite.db");
        let first_pid = cluster.controller.pid().context("the controller runs")?;
        let satellite_logs: Vec<PathBuf> =
            cluster.satellites.iter().map(|s| s.log.clone()).collect();
        let sessions = || -> Vec<usize> {
            satellite_logs
                .iter()
                .map(|log| occurrences(log, "controller says Hello"))
                .collect()
        };

        let mut revision = store_revision(&db)?;
        for attempt in 0..2 {
            // A mutation of the first controller advances the revision by exactly one.
            let reply = rest.put(
                "/v1/nodes/node1",
                &json!({"override_props": {"Aux/attempt": attempt.to_string()}}),
            )?;
            expect_clean(&reply)?;
            let after_mutation = store_revision(&db)?;
            ensure!(
                after_mutation == revision + 1,
                "one mutation moved the revision from {revision} to {after_mutation}"
            );
            revision = after_mutation;

            let store_before = snapshot_files(&data_dir, "ferrite.db")?;
            let states_before: Vec<Vec<(String, Vec<u8>)>> = cluster
                .satellites
                .iter()
                .map(|s| snapshot_files(&s.state_dir, ""))
                .collect::<Result<_>>()?;
            let sessions_before = sessions();
            let port = free_port();
            let second = cluster.controller.run_once(
                &["--listen".to_string(), format!("127.0.0.1:{port}")],
                Duration::from_secs(10),
            )?;
            ensure!(
                !second.status.success(),
                "the second controller must fail, it exited with {}",
                second.status
            );
            ensure!(
                second.elapsed < Duration::from_secs(3),
                "the second controller must exit at once, it took {:?}",
                second.elapsed
            );
            let said = format!("{}{}", second.stdout, second.stderr);
            ensure!(
                said.contains(&format!("pid {first_pid}")),
                "the refusal must name the holder's pid {first_pid}: {said}"
            );
            ensure!(
                said.contains("in use by another ferrite-controller")
                    && said.contains("--data-dir"),
                "the refusal must say what is wrong and what to do: {said}"
            );
            ensure!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                "the second controller must not have served anything"
            );
            ensure!(
                snapshot_files(&data_dir, "ferrite.db")? == store_before,
                "the second controller changed the store's files"
            );
            ensure!(store_revision(&db)? == revision, "the revision moved");
            for (satellite, before) in cluster.satellites.iter().zip(&states_before) {
                ensure!(
                    snapshot_files(&satellite.state_dir, "")? == *before,
                    "the state of satellite {} changed",
                    satellite.name
                );
            }
            ensure!(
                sessions() == sessions_before,
                "the second controller talked to a satellite"
            );
            ensure!(
                std::fs::read_to_string(data_dir.join("controller.lock"))?.trim()
                    == first_pid.to_string(),
                "the lock file must still name the first controller"
            );
        }

        // Restoring into the data directory of a running controller is refused the same way.
        let backup = cluster.dir.path().join("backup.db");
        rest.post(
            "/v1/controller/backup/db",
            &json!({"backup_name": backup.to_string_lossy()}),
        )?
        .expect_success()?;
        let restore = cluster.controller.run_once(
            &[
                "--restore".to_string(),
                backup.to_string_lossy().to_string(),
            ],
            Duration::from_secs(10),
        )?;
        ensure!(
            !restore.status.success() && restore.stderr.contains(&format!("pid {first_pid}")),
            "a restore under a running controller must be refused naming it: {restore:?}"
        );
        ensure!(
            store_revision(&db)? == revision,
            "the refused restore moved the revision"
        );

        // The first controller still works and counts on.
        let reply = rest.put(
            "/v1/resource-definitions/web",
            &json!({"override_props": {"Aux/after": "yes"}}),
        )?;
        expect_clean(&reply)?;
        ensure!(store_revision(&db)? == revision + 1);
        ensure!(cluster.controller.is_running());
        cluster.wait_online(SETTLE)?;
        verify_all(&replicas)?;
        Ok(())
    });
}

// ---- 3. restoring a copy of the store --------------------------------------------------------

/// Places `resource` on both nodes and fills its volume on each.
fn place_and_fill_on_both(cluster: &Cluster, resource: &str) -> Result<Vec<Replica>> {
    let rest = cluster.rest();
    create_definition(&rest, resource, &[VOLUME_KIB])?;
    let mut replicas = Vec::new();
    for node in ["node1", "node2"] {
        expect_clean(&place(&rest, resource, node, POOL)?)?;
        replicas.push(fill(
            &rest,
            resource,
            node,
            0,
            &cluster.pool_dir(node),
            VOLUME_KIB,
        )?);
    }
    Ok(replicas)
}

/// (a) A stale copy of the store put in place with `cp`: the satellites refuse its older state
/// (the nodes show FULL_SYNC_FAILED, and the reason names the older generation), and every
/// volume created after the copy was taken is still there with its data.
#[test]
fn a_stale_copy_of_the_store_is_refused_by_the_satellites_and_loses_nothing() {
    if skipped() {
        return;
    }
    let _timer =
        Timer::start("a_stale_copy_of_the_store_is_refused_by_the_satellites_and_loses_nothing");
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        let mut replicas = place_and_fill_on_both(cluster, "early")?;

        let db = cluster.controller.data_dir.join("ferrite.db");
        let stale = cluster.dir.path().join("stale-copy.db");
        cluster.controller.stop()?;
        std::fs::copy(&db, &stale)?;
        let stale_revision = store_revision(&stale)?;
        cluster.controller.start_again()?;
        cluster.wait_online(SETTLE)?;
        let later = place_and_fill_on_both(cluster, "later")?;
        replicas.extend(later.iter().cloned());
        let current_revision = store_revision(&db)?;
        ensure!(current_revision > stale_revision);

        // An operator copies the old file back, as if it were a backup.
        cluster.controller.stop()?;
        for leftover in ["ferrite.db-wal", "ferrite.db-shm"] {
            let _ = std::fs::remove_file(cluster.controller.data_dir.join(leftover));
        }
        std::fs::copy(&stale, &db)?;
        cluster.controller.start_again()?;
        for node in ["node1", "node2"] {
            wait_node_status(&rest, node, "FULL_SYNC_FAILED")?;
        }
        let log = cluster.controller.current_log();
        let logged = std::fs::read_to_string(&log)?;
        ensure!(
            logged.contains("satellite did not take the desired state")
                && logged.contains(&format!(
                    "generation {stale_revision} (epoch 0)) is older than the one this node applied"
                )),
            "the controller's log must say why the nodes refused: see {}",
            log.display()
        );
        // A change made on the stale store reaches no node, and the answer says why.
        let reply = rest.put(
            "/v1/nodes/node1",
            &json!({"override_props": {"Aux/stale": "1"}}),
        )?;
        let warning = expect_warning(
            &reply,
            code::WARN_STLT_NOT_UPDATED,
            "could not take the change",
        )?;
        ensure!(
            text(&warning, "cause").contains("is older than the one this node applied")
                && text(&warning, "cause").contains("--restore"),
            "the cause must name the older state and the way out: {warning}"
        );
        // Changes on the stale store until its revision passes the nodes': its states are then
        // newer, but they drop 'later' without deleting it, and the nodes still refuse them.
        let mut stale_now = store_revision(&db)?;
        while stale_now <= current_revision {
            rest.put(
                "/v1/nodes/node2",
                &json!({"override_props": {"Aux/stale": stale_now.to_string()}}),
            )?
            .expect_success()?;
            stale_now = store_revision(&db)?;
        }
        let reply = rest.put(
            "/v1/resource-definitions/early",
            &json!({"override_props": {"Aux/newer": "1"}}),
        )?;
        let warning = expect_warning(
            &reply,
            code::WARN_STLT_NOT_UPDATED,
            "could not take the change",
        )?;
        ensure!(
            text(&warning, "cause").contains("no longer wants volume later/0 (later_00000)"),
            "the nodes must refuse a newer state that drops 'later': {warning}"
        );
        // The stale store does not know 'later'; the nodes keep it anyway.
        ensure!(definition_names(&rest)? == names(&["early"]));
        std::thread::sleep(Duration::from_millis(500));
        for node in ["node1", "node2"] {
            ensure!(
                entries(&cluster.pool_dir(node))?
                    == names(&[".ferrite-pool", "early_00000.img", "later_00000.img"]),
                "files vanished from {node}'s pool"
            );
            ensure!(node_status(&rest, node)? == "FULL_SYNC_FAILED");
        }
        verify_all(&replicas)?;
        for replica in &later {
            // The state is a snapshot and a journal of the deltas since.
            let state_dir = &cluster.satellite(&replica.node).state_dir;
            let mut state = std::fs::read_to_string(state_dir.join("desired-state.json"))?;
            if let Ok(journal) = std::fs::read(state_dir.join("desired-state.journal")) {
                state.push_str(&String::from_utf8_lossy(&journal));
            }
            ensure!(
                state.contains("\"later\""),
                "{} must still want 'later'",
                replica.node
            );
        }
        Ok(())
    });
}

/// (b) The supported way: a backup over REST, more volumes, a restore with
/// `ferrite-controller --restore`: the satellites take the restored state, the volumes made
/// after the backup stay on their nodes as orphans with their data, and deleting one orphan
/// removes exactly it.
#[test]
fn a_restored_backup_keeps_later_volumes_as_orphans_until_one_is_deleted_by_name() {
    if skipped() {
        return;
    }
    let _timer = Timer::start(
        "a_restored_backup_keeps_later_volumes_as_orphans_until_one_is_deleted_by_name",
    );
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        let early = place_and_fill_on_both(cluster, "early")?;

        let backup = cluster.dir.path().join("backup.db");
        let reply = rest.post(
            "/v1/controller/backup/db",
            &json!({"backup_name": backup.to_string_lossy()}),
        )?;
        expect_clean(&reply)?;
        ensure!(reply.status == 201, "a backup answers 201: {}", reply.json);
        ensure!(
            text(reply.entries()[0], "message").contains(&*backup.to_string_lossy()),
            "the answer names the file: {}",
            reply.json
        );
        // A backup never overwrites, and wants an absolute path.
        expect_refusal(
            &rest.post(
                "/v1/controller/backup/db",
                &json!({"backup_name": backup.to_string_lossy()}),
            )?,
            400,
            code::FAIL_INVLD_REQUEST,
            "could not be backed up",
        )?;
        expect_refusal(
            &rest.post(
                "/v1/controller/backup/db",
                &json!({"backup_name": "relative.db"}),
            )?,
            400,
            code::FAIL_INVLD_REQUEST,
            "could not be backed up",
        )?;

        let later = place_and_fill_on_both(cluster, "later")?;
        cluster.controller.stop()?;
        let restore = cluster.controller.run_once(
            &[
                "--restore".to_string(),
                backup.to_string_lossy().to_string(),
            ],
            Duration::from_secs(20),
        )?;
        ensure!(restore.status.success(), "restore failed: {restore:?}");
        ensure!(
            restore.stdout.contains("epoch is now 1"),
            "the restore says the new epoch: {}",
            restore.stdout
        );
        cluster.controller.start_again()?;
        cluster.wait_online(SETTLE)?;
        ensure!(definition_names(&rest)? == names(&["early"]));

        // Both nodes keep 'later' as an orphan, with its data.
        let mut listed = Vec::new();
        wait_until(SETTLE, || {
            listed = orphans(&rest)?;
            Ok(listed.len() == 2)
        })
        .with_context(|| format!("orphans: {listed:?}"))?;
        for (orphan, replica) in listed.iter().zip(&later) {
            ensure!(
                orphan["node_name"] == replica.node.as_str()
                    && orphan["resource_name"] == "later"
                    && orphan["volume_number"] == 0
                    && orphan["backing_name"] == "later_00000"
                    && orphan["storage_pool_name"] == POOL
                    && orphan["identity"].as_str().is_some_and(|i| !i.is_empty())
                    && !text(orphan, "reason").is_empty(),
                "unexpected orphan {orphan}"
            );
            let per_node = rest.get(&format!("/v1/nodes/{}/orphans", replica.node))?;
            ensure!(per_node.json == json!([orphan]), "{}", per_node.json);
        }
        verify_all(&early)?;
        verify_all(&later)?;

        // A reference that does not name an orphan exactly deletes nothing.
        let orphan = &listed[0];
        let wrong = json!({
            "resource_name": "later",
            "volume_number": 0,
            "identity": "not-its-identity",
            "pool_name": orphan["pool_name"],
        });
        let reply = rest.post("/v1/nodes/node1/orphans/delete", &wrong)?;
        ensure!(reply.status == 404, "{}", reply.json);
        let entry = reply.entries()[0].clone();
        ensure!(
            low_code(&entry) == code::FAIL_NOT_FOUND_VLM
                && text(&entry, "message").contains("reports no orphan")
                && !text(&entry, "correction").is_empty(),
            "{entry}"
        );
        verify_all(&later)?;

        // Deleting node1's orphan removes exactly that file.
        let reply = rest.post(
            "/v1/nodes/node1/orphans/delete",
            &json!({
                "resource_name": orphan["resource_name"],
                "volume_number": orphan["volume_number"],
                "identity": orphan["identity"],
                "pool_name": orphan["pool_name"],
            }),
        )?;
        expect_clean(&reply)?;
        ensure!(
            text(reply.entries()[0], "message")
                .contains("Deleted orphaned backing volume 'later_00000'"),
            "{}",
            reply.json
        );
        ensure!(
            entries(&cluster.pool_dir("node1"))? == names(&[".ferrite-pool", "early_00000.img"]),
            "node1 keeps exactly 'early'"
        );
        ensure!(
            entries(&cluster.pool_dir("node2"))?
                == names(&[".ferrite-pool", "early_00000.img", "later_00000.img"]),
            "node2 keeps everything"
        );
        let remaining = orphans(&rest)?;
        ensure!(
            remaining.len() == 1 && remaining[0]["node_name"] == "node2",
            "{remaining:?}"
        );
        verify_all(&early)?;
        verify_all(&later[1..])?;

        // The name 'later' made anew (a new identity): where the orphan was deleted it gets a new,
        // empty volume; where the orphan is kept, the new volume waits and the orphan stays whole.
        create_definition(&rest, "later", &[VOLUME_KIB])?;
        expect_clean(&place(&rest, "later", "node1", POOL)?)?;
        let fresh = fill(
            &rest,
            "later",
            "node1",
            0,
            &cluster.pool_dir("node1"),
            VOLUME_KIB,
        )?;
        let reply = place(&rest, "later", "node2", POOL)?;
        let warning = expect_warning(&reply, code::WARN_STORAGE_ERROR, "failed on node 'node2'")?;
        ensure!(
            text(&warning, "cause").contains("is taken by an earlier volume of the same name"),
            "{warning}"
        );
        ensure!(orphans(&rest)?.len() == 1);
        verify_all(&early)?;
        verify_all(&later[1..])?;
        verify_all(&[fresh])?;
        for node in ["node1", "node2"] {
            ensure!(node_status(&rest, node)? == "ONLINE");
        }
        Ok(())
    });
}

// ---- 4. a pool whose file system is not mounted; a volume that is really missing --------------

/// The text of a storage pool's reports, as `GET /v1/view/storage-pools` shows them.
fn pool_reports(rest: &Rest, node: &str, pool: &str) -> Result<String> {
    let reply = rest.get(&format!("/v1/nodes/{node}/storage-pools/{pool}"))?;
    ensure!(reply.status == 200, "{}", reply.json);
    Ok(reply.json["reports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} {}", text(r, "message"), text(r, "cause")))
        .collect::<Vec<_>>()
        .join(" | "))
}

/// The pool's directory is the mount point of a small ext4 file system. With the file system
/// not mounted (a boot where it failed), the satellite finds an empty directory: it reports the
/// pool unusable and its volumes failed, creates nothing there (not even its marker) and
/// deletes nothing; mounted again, the volumes are UpToDate with their data. A backing file
/// that is really gone is reported missing and not created again until the operator says so.
#[test]
fn an_unmounted_pool_is_left_alone_and_a_missing_volume_waits_for_the_operator() {
    if skipped() {
        return;
    }
    let _timer =
        Timer::start("an_unmounted_pool_is_left_alone_and_a_missing_volume_waits_for_the_operator");
    // Declared first, dropped last: unmounted after the satellites are gone.
    let mut fs = MountedImage::create(48).expect("a file system to mount");
    run(storage_only(1, &["--reconcile-interval", "1"]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes()?;
        let pool_dir = fs.path().to_path_buf();
        cluster.create_storage_pool("node1", POOL, "FILE_THIN", &pool_dir)?;
        let mut replicas = Vec::new();
        for resource in ["vm", "scratch", "doomed"] {
            create_definition(&rest, resource, &[VOLUME_KIB])?;
            expect_clean(&place(&rest, resource, "node1", POOL)?)?;
            replicas.push(fill(&rest, resource, "node1", 0, &pool_dir, VOLUME_KIB)?);
        }
        let (vm, scratch, doomed) = (
            replicas[0].clone(),
            replicas[1].clone(),
            replicas[2].clone(),
        );

        // A boot where the file system did not mount.
        cluster.satellite_mut("node1").kill();
        fs.unmount()?;
        ensure!(entries(&pool_dir)?.is_empty(), "the mount point is empty");
        bring_back(cluster, "node1", "ONLINE")?;
        let failed = wait_disk_state(&rest, "vm", "node1", 0, "Failed")?;
        let why = volume_errors(&failed);
        ensure!(
            why.contains("is not usable") && why.contains("not mounted"),
            "the volume must say its pool is not the storage it was created in: {failed}"
        );
        let reports = pool_reports(&rest, "node1", POOL)?;
        ensure!(
            reports.contains("no identity (no marker)") && reports.contains("not mounted"),
            "the pool must be reported unusable, with the reason: {reports}"
        );
        // A new resource in the unusable pool is not created there; a deletion waits.
        create_definition(&rest, "fresh", &[VOLUME_KIB])?;
        let reply = place(&rest, "fresh", "node1", POOL)?;
        let warning = expect_warning(&reply, code::WARN_STORAGE_ERROR, "failed on node 'node1'")?;
        ensure!(
            text(&warning, "cause").contains("is not usable"),
            "{warning}"
        );
        let reply = rest.delete("/v1/resource-definitions/doomed")?;
        let warning = expect_warning(&reply, code::WARN_NOT_CONNECTED, "marked for deletion")?;
        ensure!(
            text(&warning, "cause").contains("cannot be yet"),
            "the deletion must say why it waits: {warning}"
        );
        // Another reconcile pass later, still nothing in the empty directory.
        let log = cluster.satellite("node1").log.clone();
        wait_for_passes(&log, "storage pool not usable", 1)?;
        ensure!(
            entries(&pool_dir)?.is_empty(),
            "the satellite wrote into the directory of an unmounted pool: {:?}",
            entries(&pool_dir)?
        );
        ensure!(definition_names(&rest)?.contains("doomed"));
        ensure!(disk_state(&volume_of(&rest, "vm", "node1", 0)?.unwrap_or_default()) == "Failed");
        ensure!(
            orphans(&rest)?.is_empty(),
            "the volumes of an unusable pool are not orphans"
        );

        // Mounted again: found as it was, and the waiting work is done there.
        fs.mount()?;
        wait_disk_state(&rest, "vm", "node1", 0, "UpToDate")?;
        wait_disk_state(&rest, "fresh", "node1", 0, "UpToDate")?;
        wait_until(SETTLE, || Ok(!definition_names(&rest)?.contains("doomed")))
            .context("the deletion of 'doomed' finishes once its pool is back")?;
        ensure!(!doomed.file.exists());
        ensure!(is_all_zero(&image(&pool_dir, "fresh", 0))?);
        ensure!(pool_reports(&rest, "node1", POOL)?.is_empty());
        verify_all(&[vm.clone(), scratch.clone()])?;

        // A backing file that is really gone: reported missing, not created again.
        let scratch_device = volume_of(&rest, "scratch", "node1", 0)?
            .and_then(|v| v["device_path"].as_str().map(PathBuf::from))
            .context("scratch has a device")?;
        std::fs::remove_file(&scratch.file)?;
        let missing = wait_disk_state(&rest, "scratch", "node1", 0, "Failed")?;
        let why = volume_errors(&missing);
        ensure!(
            why.contains("is missing") && why.contains("recreate-missing"),
            "the volume must be reported missing with the way out: {missing}"
        );
        ensure!(
            why.contains(&format!("still readable from {}", scratch_device.display())),
            "the report must say where the deleted file's data still is: {missing}"
        );
        wait_for_passes(&log, "was created by this node but is missing", 1)?;
        ensure!(!scratch.file.exists(), "a missing volume was created again");
        // Its loop device is left alone: the deleted file's data can still be read from it.
        scratch
            .pattern
            .verify(&scratch_device)
            .context("the data of the deleted file through its loop device")?;
        // A volume that is there is not missing.
        let reply = rest.post(
            "/v1/resource-definitions/vm/resources/node1/volumes/0/recreate-missing",
            &json!(null),
        )?;
        let refusal = expect_refusal(&reply, 409, code::FAIL_NOT_CONNECTED, "did not carry out")?;
        ensure!(
            text(&refusal, "cause").contains("it is not missing"),
            "{refusal}"
        );
        verify_all(std::slice::from_ref(&vm))?;
        // The operator accepts the loss: a new, empty volume.
        let reply = rest.post(
            "/v1/resource-definitions/scratch/resources/node1/volumes/0/recreate-missing",
            &json!(null),
        )?;
        expect_clean(&reply)?;
        ensure!(reply.status == 201, "{}", reply.json);
        ensure!(
            text(reply.entries()[0], "message").contains("created anew, empty"),
            "{}",
            reply.json
        );
        wait_disk_state(&rest, "scratch", "node1", 0, "UpToDate")?;
        ensure!(
            std::fs::metadata(&scratch.file)?.len() == VOLUME_KIB * 1024
                && is_all_zero(&scratch.file)?,
            "the recreated volume is new and empty"
        );
        verify_all(std::slice::from_ref(&vm))?;
        ensure!(
            entries(&pool_dir)?
                == names(&[
                    ".ferrite-pool",
                    "lost+found",
                    "vm_00000.img",
                    "scratch_00000.img",
                    "fresh_00000.img"
                ])
        );
        ensure!(orphans(&rest)?.is_empty());
        Ok(())
    });
}

// ---- 5. deleting a definition while one of its nodes is offline -------------------------------

/// A definition deleted while one of its nodes is offline is deleted where it can be, and
/// stays, marked, until the offline node comes back and deletes its volume too; meanwhile its
/// name cannot be taken. Created again afterwards, with another size, it gets new, empty
/// volumes on both nodes.
#[test]
fn a_definition_deleted_with_a_node_offline_finishes_when_it_returns_and_comes_back_empty() {
    if skipped() {
        return;
    }
    let _timer = Timer::start(
        "a_definition_deleted_with_a_node_offline_finishes_when_it_returns_and_comes_back_empty",
    );
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        let old = place_and_fill_on_both(cluster, "db")?;
        let bystanders = place_and_fill_on_both(cluster, "other")?;

        take_down(cluster, "node2")?;
        let reply = rest.delete("/v1/resource-definitions/db")?;
        let warning = expect_warning(&reply, code::WARN_NOT_CONNECTED, "marked for deletion")?;
        ensure!(
            text(&warning, "cause").contains("'node2': it is OFFLINE"),
            "the answer must say which node it waits for: {warning}"
        );
        wait_until(SETTLE, || Ok(!old[0].file.exists()))
            .context("the online node deletes its volume")?;
        old[1]
            .verify()
            .context("the offline node's volume is untouched")?;
        let flags = resources_of(&rest, "db")?;
        ensure!(
            flags.len() == 1 && flags[0]["node_name"] == "node2",
            "only node2's resource remains, marked: {flags:?}"
        );

        // The name is taken until the deletion is done, whatever its case.
        for name in ["db", "DB"] {
            let reply = rest.post(
                "/v1/resource-definitions",
                &json!({"resource_definition": {"name": name}}),
            )?;
            let refusal = expect_refusal(
                &reply,
                409,
                code::FAIL_EXISTS_RSC_DFN,
                "is still being deleted",
            )?;
            ensure!(text(&refusal, "cause").contains("'node2'"), "{refusal}");
        }
        let reply = rest.post(
            "/v1/resource-definitions/db/resources",
            &json!([{"resource": {"node_name": "node1", "props": {"StorPoolName": POOL}}}]),
        )?;
        expect_refusal(&reply, 409, code::FAIL_IN_USE, "is being deleted")?;

        // The pending deletion survives a crash of the controller.
        cluster.controller.restart()?;
        let reply = rest.post(
            "/v1/resource-definitions",
            &json!({"resource_definition": {"name": "db"}}),
        )?;
        expect_refusal(
            &reply,
            409,
            code::FAIL_EXISTS_RSC_DFN,
            "is still being deleted",
        )?;
        wait_node_status(&rest, "node1", "ONLINE")?;
        ensure!(!old[0].file.exists());
        old[1].verify()?;

        bring_back(cluster, "node2", "ONLINE")?;
        wait_until(SETTLE, || Ok(!definition_names(&rest)?.contains("db")))
            .context("the deletion finishes once node2 is back")?;
        ensure!(!old[1].file.exists(), "node2 deleted its volume");

        // The same name, another size: new volumes, empty, on both nodes.
        const NEW_KIB: u64 = 2 * VOLUME_KIB;
        create_definition(&rest, "db", &[NEW_KIB])?;
        let mut fresh = Vec::new();
        for (node, previous) in ["node1", "node2"].iter().zip(&old) {
            expect_clean(&place(&rest, "db", node, POOL)?)?;
            let volume = wait_disk_state(&rest, "db", node, 0, "UpToDate")?;
            ensure!(volume["usable_size_kib"] == NEW_KIB, "{volume}");
            ensure!(std::fs::metadata(&previous.file)?.len() == NEW_KIB * 1024);
            ensure!(
                find_block_of(&previous.file, &previous.pattern)?.is_none(),
                "the new volume holds data of the old one"
            );
            fresh.push(fill(
                &rest,
                "db",
                node,
                0,
                &cluster.pool_dir(node),
                NEW_KIB,
            )?);
        }
        verify_all(&fresh)?;
        verify_all(&bystanders)?;
        for node in ["node1", "node2"] {
            ensure!(
                entries(&cluster.pool_dir(node))?
                    == names(&[".ferrite-pool", "db_00000.img", "other_00000.img"])
            );
        }
        ensure!(orphans(&rest)?.is_empty());
        Ok(())
    });
}

// ---- 6. node lost, then registered again ------------------------------------------------------

/// `node lost` is refused while the node's satellite is connected and accepted once it is
/// not. When the node comes back and is registered again under the same name and address, its
/// old volumes are not deleted: they are listed as orphans with their data.
#[test]
fn a_lost_node_registered_again_keeps_its_old_volumes_as_orphans() {
    if skipped() {
        return;
    }
    let _timer = Timer::start("a_lost_node_registered_again_keeps_its_old_volumes_as_orphans");
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        let replicas = place_and_fill_on_both(cluster, "app")?;

        let reply = rest.delete("/v1/nodes/node2/lost")?;
        expect_refusal(&reply, 409, code::FAIL_IN_USE, "is not lost")?;
        ensure!(node_status(&rest, "node2")? == "ONLINE");

        take_down(cluster, "node2")?;
        let reply = rest.delete("/v1/nodes/node2/lost")?;
        reply.expect_success()?;
        ensure!(
            reply
                .entries()
                .iter()
                .any(|e| text(e, "message").contains("Node 'node2' deleted as lost")),
            "{}",
            reply.json
        );
        let nodes = rest.get("/v1/nodes")?.json;
        ensure!(
            nodes
                .as_array()
                .is_some_and(|n| n.len() == 1 && n[0]["name"] == "node1"),
            "{nodes}"
        );
        ensure!(resources_of(&rest, "app")?.len() == 1);
        verify_all(&replicas)?;

        // The node comes back and is registered again, with its pool.
        cluster.satellite_mut("node2").restart()?;
        let reply = cluster.register_node("node2")?;
        reply.expect_success()?;
        wait_node_status(&rest, "node2", "ONLINE")?;
        cluster.create_storage_pool("node2", POOL, "FILE_THIN", &cluster.pool_dir("node2"))?;
        let mut listed = Vec::new();
        wait_until(SETTLE, || {
            let reply = rest.get("/v1/nodes/node2/orphans")?;
            listed = reply.json.as_array().cloned().unwrap_or_default();
            Ok(listed.len() == 1)
        })
        .with_context(|| format!("node2's orphans: {listed:?}"))?;
        let orphan = &listed[0];
        ensure!(
            orphan["resource_name"] == "app"
                && orphan["backing_name"] == "app_00000"
                && text(orphan, "reason").contains("not in this node's desired state"),
            "{orphan}"
        );
        ensure!(orphans(&rest)?.len() == 1);
        ensure!(node_status(&rest, "node2")? == "ONLINE");
        ensure!(entries(&cluster.pool_dir("node2"))? == names(&[".ferrite-pool", "app_00000.img"]));
        verify_all(&replicas)?;
        Ok(())
    });
}

// ---- 7. a thick pool: concurrent creates, and a create that fails on the node -----------------

/// The free space a node reported for a pool, in KiB.
fn reported_free_kib(rest: &Rest, node: &str, pool: &str) -> Result<u64> {
    let reply = rest.get(&format!("/v1/nodes/{node}/storage-pools/{pool}"))?;
    reply.json["free_capacity"]
        .as_u64()
        .with_context(|| format!("no free capacity in {}", reply.json))
}

/// Fills the file system at `dir` with a file of zeros until `keep_kib` are left free
/// (behind the controller's back: the satellite reports it only at its next pass).
fn fill_file_system(dir: &Path, keep_kib: u64) -> Result<PathBuf> {
    use std::io::Write as _;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler)?;
    let chunk = vec![0u8; 1 << 20];
    loop {
        let free = df_free_kib(dir)?;
        if free <= keep_kib + 1024 {
            break;
        }
        let n = ((free - keep_kib) * 1024).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        file.sync_all()?;
    }
    Ok(filler)
}

/// Free KiB of the file system holding `dir`, as the satellite measures it (statvfs f_bavail).
fn df_free_kib(dir: &Path) -> Result<u64> {
    let output = std::process::Command::new("df")
        .args(["--output=avail", "-k"])
        .arg(dir)
        .output()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .context("df printed no figure")?
        .trim()
        .parse()
        .context("parsing df")
}

/// On a thick (FILE) pool in a 64 MiB file system, two volumes that each fit but not both
/// are created at the same time: the controller accepts exactly one and refuses the other
/// before anything is made on the node. Then a create the controller must accept (the space
/// it knows of is stale) fails on the node: the partial file is removed, and the failure is
/// in the answer and the volume's state until a later change succeeds.
#[test]
fn a_thick_pool_reserves_space_for_concurrent_creates_and_a_failed_create_leaves_nothing() {
    if skipped() {
        return;
    }
    let _timer = Timer::start(
        "a_thick_pool_reserves_space_for_concurrent_creates_and_a_failed_create_leaves_nothing",
    );
    let fs = MountedImage::create(64).expect("a file system to mount");
    run(storage_only(1, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes()?;
        let pool_dir = fs.path().to_path_buf();
        cluster.create_storage_pool("node1", "thick", "FILE", &pool_dir)?;
        let mut free = 0;
        wait_until(SETTLE, || {
            free = reported_free_kib(&rest, "node1", "thick").unwrap_or(0);
            Ok(free > 0)
        })?;
        // Each fits; both do not.
        let size_kib = (free / 2 + 2048) / 1024 * 1024;
        ensure!(
            size_kib < free && 2 * size_kib > free,
            "free {free} KiB, volumes {size_kib} KiB"
        );
        let before_files = entries(&pool_dir)?;
        for name in ["va", "vb"] {
            create_definition(&rest, name, &[size_kib])?;
        }
        let ((winner, won), (loser, lost)) = exactly_one_wins("create", ["va", "vb"], {
            let rest = rest.clone();
            move |name| place(&rest, name, "node1", "thick")
        })?;
        expect_clean(&won)?;
        let refusal = expect_refusal(
            &lost,
            409,
            code::FAIL_NOT_ENOUGH_FREE_SPACE,
            "has too little free space",
        )?;
        ensure!(text(&refusal, "cause").contains("are needed"), "{refusal}");
        ensure!(
            resources_of(&rest, loser)?.is_empty(),
            "the refused create left a resource"
        );
        let winner_file = image(&pool_dir, winner, 0);
        let mut expected = before_files.clone();
        expected.insert(format!("{winner}_00000.img"));
        ensure!(
            entries(&pool_dir)? == expected,
            "only the winner's file exists: {:?}",
            entries(&pool_dir)?
        );
        let metadata = std::fs::metadata(&winner_file)?;
        ensure!(
            std::os::unix::fs::MetadataExt::blocks(&metadata) * 512 >= size_kib * 1024,
            "a FILE volume is allocated whole"
        );
        let mut replicas = vec![fill(&rest, winner, "node1", 0, &pool_dir, size_kib)?];

        // The same race through the autoplacer: two spawns from a group on the thick pool.
        rest.post(
            "/v1/resource-groups",
            &json!({"name": "thick_group", "select_filter": {"place_count": 1, "storage_pool": "thick"}}),
        )?
        .expect_success()?;
        rest.post("/v1/resource-groups/thick_group/volume-groups", &json!({}))?
            .expect_success()?;
        let free = reported_free_kib(&rest, "node1", "thick")?;
        let spawn_kib = (free / 2 + 2048) / 1024 * 1024;
        ensure!(
            spawn_kib < free && 2 * spawn_kib > free,
            "free {free} KiB, volumes {spawn_kib} KiB"
        );
        let before_files = entries(&pool_dir)?;
        let ((spawned_name, _), (refused_name, refused)) =
            exactly_one_wins("spawn", ["sa", "sb"], {
                let rest = rest.clone();
                move |name| {
                    rest.post(
                        "/v1/resource-groups/thick_group/spawn",
                        &json!({"resource_definition_name": name, "volume_sizes": [spawn_kib]}),
                    )
                }
            })?;
        // The autoplacer answers as LINSTOR's does (no node can take it) and names the pool's
        // free space, with what the first spawn reserved already taken off, as the reason.
        let refusal = expect_refusal(
            &refused,
            409,
            code::FAIL_NOT_ENOUGH_NODES,
            "Not enough available nodes",
        )?;
        ensure!(
            text(&refusal, "cause").contains("storage pool 'thick' on 'node1' has")
                && text(&refusal, "cause").contains("needed"),
            "{refusal}"
        );
        ensure!(
            !definition_names(&rest)?.contains(refused_name),
            "a refused spawn must leave no definition behind"
        );
        let mut expected = before_files.clone();
        expected.insert(format!("{spawned_name}_00000.img"));
        ensure!(
            entries(&pool_dir)? == expected,
            "only the spawned volume's file is new"
        );
        replicas.push(fill(&rest, spawned_name, "node1", 0, &pool_dir, spawn_kib)?);

        // The file system fills behind the controller's back; it still believes the old figure.
        let believed = reported_free_kib(&rest, "node1", "thick")?;
        let small_kib = believed / 2 / 1024 * 1024;
        ensure!(
            small_kib >= 2048,
            "the controller believes {believed} KiB are free"
        );
        let filler = fill_file_system(&pool_dir, small_kib / 2)?;
        create_definition(&rest, "vc", &[small_kib])?;
        let reply = place(&rest, "vc", "node1", "thick")?;
        let warning = expect_warning(&reply, code::WARN_STORAGE_ERROR, "failed on node 'node1'")?;
        let cause = text(&warning, "cause");
        ensure!(
            cause.contains("creating the volume failed")
                && cause.contains("the partial volume was removed")
                && cause.contains("next attempt in"),
            "the answer must say the create failed, what was cleaned up and when it is retried: {warning}"
        );
        ensure!(
            !image(&pool_dir, "vc", 0).exists(),
            "the partial file remains"
        );
        let volume = volume_of(&rest, "vc", "node1", 0)?.context("vc is listed")?;
        ensure!(
            disk_state(&volume) == "Failed"
                && volume_errors(&volume).contains("creating the volume failed"),
            "the volume state must show the failure: {volume}"
        );
        ensure!(
            !entries(&pool_dir)?.iter().any(|f| f.starts_with("vc_")),
            "no partial file may remain"
        );

        // Space freed and any change to the resource: created, whole.
        std::fs::remove_file(&filler)?;
        let reply = rest.put(
            "/v1/resource-definitions/vc/resources/node1",
            &json!({"override_props": {"Aux/retry": "now"}}),
        )?;
        expect_clean(&reply)?;
        replicas.push(fill(&rest, "vc", "node1", 0, &pool_dir, small_kib)?);
        verify_all(&replicas)?;
        Ok(())
    });
}

// ---- 8. the only reachable replica -------------------------------------------------------------

/// While a node is offline its volumes show "Unknown", not UpToDate; the disk of the only
/// replica on an online node can be neither made diskless nor deleted, and nothing changes.
#[test]
fn with_a_replica_offline_the_only_reachable_one_cannot_lose_its_disk() {
    if skipped() {
        return;
    }
    let _timer = Timer::start("with_a_replica_offline_the_only_reachable_one_cannot_lose_its_disk");
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        let replicas = place_and_fill_on_both(cluster, "vol")?;

        take_down(cluster, "node2")?;
        let offline = volume_of(&rest, "vol", "node2", 0)?.context("listed")?;
        ensure!(disk_state(&offline) == "Unknown", "{offline}");
        let online = volume_of(&rest, "vol", "node1", 0)?.context("listed")?;
        ensure!(disk_state(&online) == "UpToDate", "{online}");
        let before = ClusterState::capture(&rest)?;

        let attempts = [
            (
                "toggle-disk --diskless (URL form)",
                rest.put(
                    "/v1/resource-definitions/vol/resources/node1/toggle-disk/diskless",
                    &json!(null),
                )?,
            ),
            (
                "toggle-disk --diskless (body form)",
                rest.put(
                    "/v1/resource-definitions/vol/resources/node1/toggle-disk",
                    &json!({"operation": "INTO_DRBD_DISKLESS"}),
                )?,
            ),
            (
                "resource delete",
                rest.delete("/v1/resource-definitions/vol/resources/node1")?,
            ),
        ];
        for (what, reply) in &attempts {
            let refusal = expect_refusal(
                reply,
                409,
                code::FAIL_INSUFFICIENT_REPLICA_COUNT,
                "no other replica of 'vol' is UpToDate on an online node",
            )
            .with_context(|| what.to_string())?;
            ensure!(
                text(&refusal, "cause").contains("node 'node2' is not online"),
                "{what}: the cause must name the offline node: {refusal}"
            );
        }
        let after = ClusterState::capture(&rest)?;
        before.expect_same(&after, "a refused removal changed the state")?;
        std::thread::sleep(Duration::from_millis(300));
        replicas[0].verify()?;
        ensure!(
            disk_state(&volume_of(&rest, "vol", "node1", 0)?.unwrap_or_default()) == "UpToDate"
        );

        bring_back(cluster, "node2", "ONLINE")?;
        wait_disk_state(&rest, "vol", "node2", 0, "UpToDate")?;
        verify_all(&replicas)?;
        Ok(())
    });
}

// ---- 9. names that differ only in case ---------------------------------------------------------

/// `Cs` and `cs` are one name: while `Cs` is being deleted (a node offline), `cs` is refused;
/// once the node is back, `Cs`'s volumes (cs_00000.img on disk) are gone everywhere, `cs` can
/// be created, gets new empty volumes, and no file is left over in any pool.
#[test]
fn a_name_differing_only_in_case_waits_for_the_deletion_and_meets_no_old_data() {
    if skipped() {
        return;
    }
    let _timer =
        Timer::start("a_name_differing_only_in_case_waits_for_the_deletion_and_meets_no_old_data");
    run(storage_only(2, &[]), |cluster| {
        let rest = cluster.rest();
        cluster.register_nodes_with_pool(POOL)?;
        let old = place_and_fill_on_both(cluster, "Cs")?;
        for replica in &old {
            ensure!(
                replica.file.ends_with("cs_00000.img"),
                "{}",
                replica.file.display()
            );
            ensure!(replica.file.exists());
        }

        take_down(cluster, "node2")?;
        let reply = rest.delete("/v1/resource-definitions/Cs")?;
        expect_warning(&reply, code::WARN_NOT_CONNECTED, "marked for deletion")?;
        wait_until(SETTLE, || Ok(!old[0].file.exists()))?;
        let reply = rest.post(
            "/v1/resource-definitions",
            &json!({"resource_definition": {"name": "cs"}}),
        )?;
        expect_refusal(
            &reply,
            409,
            code::FAIL_EXISTS_RSC_DFN,
            "Resource definition 'Cs' is still being deleted",
        )?;
        let reply = rest.post(
            "/v1/resource-groups/DfltRscGrp/spawn",
            &json!({"resource_definition_name": "cS", "volume_sizes": [VOLUME_KIB]}),
        )?;
        let refusal = reply
            .entries()
            .into_iter()
            .find(|e| severity(e) == 3)
            .cloned()
            .with_context(|| format!("a spawn of 'cS' must be refused: {}", reply.json))?;
        ensure!(
            reply.status == 409 && text(&refusal, "message").contains("Cs"),
            "{}",
            reply.json
        );
        old[1].verify()?;

        bring_back(cluster, "node2", "ONLINE")?;
        wait_until(SETTLE, || Ok(definition_names(&rest)?.is_empty()))
            .context("'Cs' goes once node2 deleted its volume")?;
        ensure!(!old[1].file.exists());

        let fresh = place_and_fill_on_both(cluster, "cs")?;
        for (replica, previous) in fresh.iter().zip(&old) {
            ensure!(replica.file == previous.file);
            ensure!(find_block_of(&replica.file, &previous.pattern)?.is_none());
        }
        verify_all(&fresh)?;
        for node in ["node1", "node2"] {
            ensure!(
                entries(&cluster.pool_dir(node))? == names(&[".ferrite-pool", "cs_00000.img"]),
                "{node}: {:?}",
                entries(&cluster.pool_dir(node))?
            );
        }
        ensure!(orphans(&rest)?.is_empty());
        Ok(())
    });
}
