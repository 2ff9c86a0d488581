//! kill -9 the controller in the middle of a burst of mutations, restart it, and check that
//! every acknowledged mutation is there and nothing is half-made.
//!
//! Writers spawn resource definitions from a group (`definitions_only`): one request creates a
//! definition and two volume definitions in one transaction, so a definition without both its
//! volumes would be a half-made change. Other writers set controller properties. A request
//! counts as acknowledged when the controller answered 2xx; a request that was in flight when
//! the process died may or may not have landed, but if it did, it landed whole.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use ferrite_testkit::{Binaries, ControllerProcess, Rest};
use serde_json::json;

const ROUNDS: usize = 4;
const WRITERS: usize = 4;

#[derive(Default)]
struct Acknowledged {
    definitions: BTreeSet<String>,
    props: BTreeSet<String>,
}

fn writer(
    rest: Rest,
    id: usize,
    round: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acknowledged>>,
    attempts: Arc<AtomicUsize>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        attempts.fetch_add(1, Ordering::Relaxed);
        if id.is_multiple_of(2) {
            let name = format!("rd_{round}_{id}_{n}");
            let body = json!({
                "resource_definition_name": name,
                "volume_sizes": [1024, 2048],
                "definitions_only": true
            });
            match rest.post("/v1/resource-groups/crash_rg/spawn", &body) {
                Ok(reply) if reply.status == 201 && !reply.has_error() => {
                    acked.lock().unwrap().definitions.insert(name);
                }
                Ok(reply) => panic!("spawn {name} was refused: {} {}", reply.status, reply.json),
                Err(_) => return, // the controller died under us
            }
        } else {
            let key = format!("Aux/crash_{round}_{id}_{n}");
            let body = json!({"override_props": {key.clone(): "1"}});
            match rest.post("/v1/controller/properties", &body) {
                Ok(reply) if reply.status == 200 && !reply.has_error() => {
                    acked.lock().unwrap().props.insert(key);
                }
                Ok(reply) => panic!("set {key} was refused: {} {}", reply.status, reply.json),
                Err(_) => return,
            }
        }
    }
}

#[test]
fn acknowledged_mutations_survive_kill_9() -> Result<()> {
    let binaries = Binaries::locate()?;
    let dir = tempfile::Builder::new()
        .prefix("ferrite-crash-")
        .tempdir()?;
    let mut controller = ControllerProcess::start(&binaries, dir.path())?;
    let rest = controller.rest();
    rest.post("/v1/resource-groups", &json!({"name": "crash_rg"}))?
        .expect_success()?;
    rest.post("/v1/resource-groups/crash_rg/volume-groups", &json!({}))?
        .expect_success()?;
    rest.post("/v1/resource-groups/crash_rg/volume-groups", &json!({}))?
        .expect_success()?;

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
        check(&controller.rest(), &acked.lock().unwrap())?;
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.definitions.len() > 10 && acked.props.len() > 10,
        "the burst was too small to mean anything: {} definitions, {} properties acknowledged of {total_attempts} attempts",
        acked.definitions.len(),
        acked.props.len()
    );
    eprintln!(
        "{ROUNDS} kills: {} definitions and {} properties acknowledged, {total_attempts} requests sent; all present and whole",
        acked.definitions.len(),
        acked.props.len()
    );
    Ok(())
}

fn check(rest: &Rest, acked: &Acknowledged) -> Result<()> {
    let definitions = rest
        .get("/v1/resource-definitions?with_volume_definitions=true")?
        .json;
    let present: BTreeSet<String> = definitions
        .as_array()
        .unwrap()
        .iter()
        .map(|rd| {
            let name = rd["name"].as_str().unwrap().to_string();
            let volumes: Vec<(i64, i64)> = rd["volume_definitions"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .map(|vd| {
                            (
                                vd["volume_number"].as_i64().unwrap(),
                                vd["size_kib"].as_i64().unwrap(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                volumes,
                vec![(0, 1024), (1, 2048)],
                "resource definition {name} is half-made"
            );
            name
        })
        .collect();
    let missing: Vec<_> = acked.definitions.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "acknowledged resource definitions lost: {missing:?}"
    );

    let props = rest.get("/v1/controller/properties")?.json;
    let missing: Vec<_> = acked
        .props
        .iter()
        .filter(|k| props.get(k.as_str()).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged properties lost: {missing:?}"
    );
    Ok(())
}
