//! Which engine replicates a resource: the kernel's DRBD 9 or Ferrite's MIRROR.
//!
//! LINSTOR's clients know one replication layer, DRBD, and ask for it by name (or inherit it
//! from a resource group's layer list). Ferrite serves that request with the kernel's DRBD
//! where every node of the resource runs DRBD 9, else with MIRROR. The property
//! [`PROP_REPLICATION_ENGINE`] (`auto`, `drbd` or `mirror`; on the resource definition, its
//! resource group or the controller, the nearest wins) forces one; a layer list naming MIRROR
//! (Ferrite's own CLI: `-l mirror,storage`) asks for MIRROR.
//!
//! The engine is chosen when a definition gets its first resources, for the nodes they are on,
//! and held in the definition's layer stack (`LayerKind::Mirror` or `LayerKind::Drbd`) for as
//! long as it has resources: a member added later must run the same engine. Until then the
//! stack holds what was asked for (`DRBD`: either engine), and [`complete`] decides.
//!
//! A definition created without a layer list, in a resource group without one, asks for
//! nothing: its stack stays empty, as LINSTOR stores it, until its first resources are placed.
//! Then [`complete`] gives it the default: a replication layer when every node of those
//! resources runs an engine (the engine forced by the property, else the one `auto` chooses),
//! else STORAGE alone, and says which and why. LINSTOR's default is DRBD,STORAGE whatever the
//! nodes (a resource on a node without DRBD is then refused); Ferrite places it unreplicated
//! instead, since nobody asked for replication. A node whose capabilities are not known yet
//! counts as running no engine here, unlike in [`choose`]: the definition is not given a layer
//! its nodes may not run. The choice is stored and stays, also once the resources are gone, as
//! in LINSTOR.
//!
//! A satellite started with `--drbd-dry-run` reports DRBD as a dry run (it writes the resource
//! files and logs the commands, runs nothing): such a node counts as running DRBD only for a
//! definition that forces DRBD with [`PROP_REPLICATION_ENGINE`] = `drbd`, never for `auto`, so
//! no volume meant for real I/O lands on it.
//!
//! Owns none of the placement itself (`placement`), nor what the satellites do with the engine.

use std::collections::BTreeMap;

use ferrite_proto::Capabilities;
use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, LayerKind, NodeName, ResourceName};

use super::placement::Runtime;
use super::{Context, Failure, Object, Operation, Plan};
use crate::model::{Cluster, Op, ResourceDefinition};

/// Forces the engine of the resource definitions it applies to: `auto` (the default), `drbd`
/// or `mirror`, in any case. Set on a resource definition, its resource group or the
/// controller; the nearest wins.
pub const PROP_REPLICATION_ENGINE: &str = "Ferrite/ReplicationEngine";

/// The values of [`PROP_REPLICATION_ENGINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// DRBD where every node of the resource runs it, else MIRROR.
    Auto,
    Drbd,
    Mirror,
}

impl Setting {
    pub fn parse(value: &str) -> Option<Setting> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Setting::Auto),
            "drbd" => Some(Setting::Drbd),
            "mirror" => Some(Setting::Mirror),
            _ => None,
        }
    }
}

/// Checks a value of [`PROP_REPLICATION_ENGINE`]; the error is the cause to answer with.
pub fn check_value(value: &str) -> Result<(), String> {
    Setting::parse(value).map(|_| ()).ok_or_else(|| {
        format!("'{value}' is not a replication engine; {PROP_REPLICATION_ENGINE} takes auto, drbd or mirror")
    })
}

/// The value of `key` for `rd`: its own, else its resource group's, else the controller's.
pub fn inherited<'a>(
    cluster: &'a Cluster,
    rd: &'a ResourceDefinition,
    key: &str,
) -> Option<&'a str> {
    rd.props
        .get(key)
        .or_else(|| {
            cluster
                .resource_groups
                .get(&rd.resource_group)
                .and_then(|g| g.props.get(key))
        })
        .or_else(|| cluster.props.get(key))
        .map(String::as_str)
}

/// The engine setting in force for `rd`. A value that does not parse (set before values were
/// checked) counts as `auto`.
pub fn setting(cluster: &Cluster, rd: &ResourceDefinition) -> Setting {
    inherited(cluster, rd, PROP_REPLICATION_ENGINE)
        .and_then(Setting::parse)
        .unwrap_or(Setting::Auto)
}

/// The engine asked for before any node is known: a forced one, else MIRROR if the layer list
/// named it, else none (either engine, decided by the nodes).
fn asked(cluster: &Cluster, rd: &ResourceDefinition) -> Option<LayerKind> {
    match setting(cluster, rd) {
        Setting::Mirror => Some(LayerKind::Mirror),
        Setting::Drbd => Some(LayerKind::Drbd),
        Setting::Auto => {
            (rd.replication_layer() == Some(LayerKind::Mirror)).then_some(LayerKind::Mirror)
        }
    }
}

/// The engine of `rd`, if it is known: the one its resources run, else the one asked for.
/// `None` for a definition without a replication layer, or whose engine the nodes of its first
/// resources will decide.
pub fn effective(cluster: &Cluster, rd: &ResourceDefinition) -> Option<LayerKind> {
    let layer = rd.replication_layer()?;
    if rd.resources.is_empty() {
        asked(cluster, rd)
    } else {
        Some(layer)
    }
}

/// The engine's name as Ferrite's answers give it.
pub fn name(engine: LayerKind) -> &'static str {
    engine.as_str()
}

fn reasons(caps: &Capabilities, layer: LayerKind) -> String {
    caps.unsupported_layers
        .get(&layer)
        .filter(|r| !r.is_empty())
        .map(|r| r.join("; "))
        .unwrap_or_else(|| "the satellite does not report it among its layers".to_string())
}

/// Whether a node with `caps` runs `engine` for a definition: it supports it, or `engine` is
/// DRBD, the node dry-runs it and the definition `forced` DRBD by name.
fn runs(caps: &Capabilities, engine: LayerKind, forced: bool) -> bool {
    caps.supports_layer(engine)
        || (forced && engine == LayerKind::Drbd && caps.dry_runs_layer(LayerKind::Drbd))
}

/// Whether the engine of `rd` is forced to DRBD by [`PROP_REPLICATION_ENGINE`].
fn drbd_forced(cluster: &Cluster, rd: &ResourceDefinition) -> bool {
    setting(cluster, rd) == Setting::Drbd
}

fn capabilities<'a>(runtime: &'a Runtime, node: &NodeName) -> Option<&'a Capabilities> {
    runtime.get(node).and_then(|r| r.capabilities.as_ref())
}

/// Why `node` cannot hold a resource of `rd` for want of its replication engine, if so. A node
/// whose capabilities are not known yet (never connected) is not refused here; its satellite
/// refuses what it cannot run.
pub fn node_refusal(
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    node: &NodeName,
) -> Option<String> {
    rd.replication_layer()?;
    let caps = capabilities(runtime, node)?;
    match effective(cluster, rd) {
        Some(engine) if !runs(caps, engine, drbd_forced(cluster, rd)) => Some(format!(
            "node '{node}' cannot run the {engine} replication engine of '{}': {}",
            rd.name,
            reasons(caps, engine)
        )),
        Some(_) => None,
        None if caps.supports_layer(LayerKind::Drbd) || caps.supports_layer(LayerKind::Mirror) => {
            None
        }
        None => Some(format!(
            "node '{node}' runs no replication engine (MIRROR: {}; DRBD: {})",
            reasons(caps, LayerKind::Mirror),
            reasons(caps, LayerKind::Drbd)
        )),
    }
}

/// Chooses the engine of `rd` for the nodes it will be on, or refuses: the one asked for if
/// every node runs it; otherwise DRBD if every node runs DRBD 9, else MIRROR if every node runs
/// it.
pub fn choose(
    ctx: &Context,
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    nodes: &[&NodeName],
) -> Result<LayerKind, Failure> {
    let forced = drbd_forced(cluster, rd);
    let lacking = |engine: LayerKind| -> Vec<String> {
        nodes
            .iter()
            .filter_map(|node| {
                let caps = capabilities(runtime, node)?;
                (!runs(caps, engine, forced))
                    .then(|| format!("'{node}': {}", reasons(caps, engine)))
            })
            .collect()
    };
    let refuse = |message: String, cause: String, correction: &str| -> Failure {
        ctx.error(code::FAIL_STLT_DOES_NOT_SUPPORT_LAYER, message)
            .cause(cause)
            .correction(correction)
            .obj_ref("RscDfn", rd.name.as_str())
            .into()
    };
    if let Some(engine) = asked(cluster, rd) {
        let missing = lacking(engine);
        if missing.is_empty() {
            return Ok(engine);
        }
        return Err(refuse(
            format!(
                "Resource '{}' asks for the {engine} replication engine, which not every node runs.",
                rd.name
            ),
            format!("Without {engine}: {}.", missing.join("; ")),
            "Place the resource on nodes that run it ('ferrite node info'), or set the property \
             Ferrite/ReplicationEngine to auto on the resource definition or its group.",
        ));
    }
    let all_drbd = !nodes.is_empty()
        && nodes.iter().all(|node| {
            capabilities(runtime, node).is_some_and(|c| c.supports_layer(LayerKind::Drbd))
        });
    if all_drbd {
        return Ok(LayerKind::Drbd);
    }
    let missing = lacking(LayerKind::Mirror);
    if missing.is_empty() {
        return Ok(LayerKind::Mirror);
    }
    let without_drbd: Vec<String> = nodes
        .iter()
        .filter(|node| {
            !capabilities(runtime, node).is_some_and(|c| c.supports_layer(LayerKind::Drbd))
        })
        .map(|node| format!("'{node}'"))
        .collect();
    Err(refuse(
        format!(
            "No replication engine runs on every node of resource '{}'.",
            rd.name
        ),
        format!(
            "DRBD 9 is missing on {}; MIRROR is missing on {}.",
            without_drbd.join(", "),
            missing.join("; ")
        ),
        "Place the resource on nodes that all run DRBD 9 or all run MIRROR ('ferrite node info').",
    ))
}

/// Why some of `nodes` cannot run `engine`, one entry per node: the satellite's reasons, or
/// that its capabilities are not known yet.
fn without(runtime: &Runtime, nodes: &[&NodeName], engine: LayerKind) -> Vec<String> {
    without_forced(runtime, nodes, engine, false)
}

/// [`without`], where a dry run of DRBD counts when `forced`.
fn without_forced(
    runtime: &Runtime,
    nodes: &[&NodeName],
    engine: LayerKind,
    forced: bool,
) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|node| match capabilities(runtime, node) {
            Some(caps) if runs(caps, engine, forced) => None,
            Some(caps) => Some(format!("'{node}': {}", reasons(caps, engine))),
            None => Some(format!("'{node}': its layers are not known yet")),
        })
        .collect()
}

/// The engine a definition without a layer list gets on `nodes`, if they share one: the one
/// the property forces if every node runs it; else DRBD if every node runs DRBD 9, else MIRROR
/// if every node runs it. A node whose capabilities are not known runs none.
pub fn default_engine(
    cluster: &Cluster,
    runtime: &Runtime,
    rd: &ResourceDefinition,
    nodes: &[&NodeName],
) -> Option<LayerKind> {
    let forced = drbd_forced(cluster, rd);
    let everywhere = |engine: LayerKind| {
        !nodes.is_empty() && without_forced(runtime, nodes, engine, forced).is_empty()
    };
    let candidates: &[LayerKind] = match setting(cluster, rd) {
        Setting::Auto => &[LayerKind::Drbd, LayerKind::Mirror],
        Setting::Drbd => &[LayerKind::Drbd],
        Setting::Mirror => &[LayerKind::Mirror],
    };
    candidates
        .iter()
        .copied()
        .find(|engine| everywhere(*engine))
}

/// The note saying which stack a definition without a layer list got, and why.
fn default_note(
    ctx: &Context,
    cluster: &Cluster,
    rd: &ResourceDefinition,
    engine: Option<LayerKind>,
    runtime: &Runtime,
    nodes: &[&NodeName],
) -> ApiCallRc {
    let forced = match setting(cluster, rd) {
        Setting::Auto => None,
        Setting::Drbd => Some(LayerKind::Drbd),
        Setting::Mirror => Some(LayerKind::Mirror),
    };
    let note = match (engine, forced) {
        (Some(engine), Some(_)) => format!(
            "Resource '{}' is replicated by the {engine} engine (layer stack {engine},STORAGE): \
             it has no layer list, every node of it runs {engine} and \
             {PROP_REPLICATION_ENGINE} asks for it.",
            rd.name
        ),
        (Some(engine), None) => format!(
            "Resource '{}' is replicated by the {engine} engine (layer stack {engine},STORAGE): \
             it has no layer list, and {}.",
            rd.name,
            auto_reason(engine, runtime, nodes)
        ),
        (None, Some(forced)) => format!(
            "Resource '{}' is not replicated (layer stack STORAGE): it has no layer list, and \
             {PROP_REPLICATION_ENGINE} asks for {forced}, which not every node of it runs ({}).",
            rd.name,
            without(runtime, nodes, forced).join("; ")
        ),
        (None, None) => format!(
            "Resource '{}' is not replicated (layer stack STORAGE): it has no layer list, and no \
             replication engine runs on every node of it. Without DRBD 9: {}. Without MIRROR: \
             {}.",
            rd.name,
            without(runtime, nodes, LayerKind::Drbd).join("; "),
            without(runtime, nodes, LayerKind::Mirror).join("; ")
        ),
    };
    let rc = ctx
        .info(code::INFO_REPLICATION_ENGINE, note)
        .obj_ref("RscDfn", rd.name.as_str());
    match engine {
        Some(_) => rc,
        None => rc.correction(
            "The layer stack stays STORAGE. To replicate the resource, delete its resources and \
             place it again with a layer list (e.g. '-l drbd,storage') on nodes that run DRBD 9 \
             or MIRROR ('ferrite node info').",
        ),
    }
}

/// Whether a requested layer stack fits `actual`: the same layers, where a request's DRBD
/// (LINSTOR's name for replication) fits either engine.
pub fn stacks_match(requested: &[LayerKind], actual: &[LayerKind]) -> bool {
    requested.len() == actual.len()
        && requested
            .iter()
            .zip(actual)
            .all(|(r, a)| r == a || (*r == LayerKind::Drbd && a.is_replication()))
}

/// Chooses the engine of every definition the plan gives its first resources, for the nodes
/// they are on, and records it in the definition's layer stack (an op before its resources'
/// ops). Refuses a plan whose nodes share no engine.
pub fn complete(cluster: &Cluster, runtime: &Runtime, plan: &mut Plan) -> Result<(), Failure> {
    let ctx = Context::new(Operation::Create, Object::Resource);
    // The definitions the plan places for the first time, with the nodes it places them on.
    let mut first: BTreeMap<ResourceName, Vec<NodeName>> = BTreeMap::new();
    for op in &plan.ops {
        if let Op::PutResource { resource, placed } = op {
            let unplaced = cluster
                .resource_definition(resource)
                .is_none_or(|rd| rd.resources.is_empty());
            if unplaced && !placed.is_deleting() {
                let nodes = first.entry(resource.clone()).or_default();
                if !nodes.contains(&placed.node) {
                    nodes.push(placed.node.clone());
                }
            }
        }
    }
    for (name, nodes) in first {
        let planned = plan.ops.iter().rev().find_map(|op| match op {
            Op::PutResourceDefinition(rd) if rd.name == name => Some(rd.clone()),
            _ => None,
        });
        let Some(rd) = planned.or_else(|| cluster.resource_definition(&name).cloned()) else {
            continue;
        };
        let node_refs: Vec<&NodeName> = nodes.iter().collect();
        if rd.default_stack_pending() {
            let engine = default_engine(cluster, runtime, &rd, &node_refs);
            plan.reply(default_note(
                &ctx, cluster, &rd, engine, runtime, &node_refs,
            ));
            if engine.is_none() && nodes.len() > 1 {
                plan.reply(super::placement::not_replicated_warning(&ctx, &rd));
            }
            let stack = engine
                .into_iter()
                .chain([LayerKind::Storage])
                .collect::<Vec<_>>();
            set_stack(cluster, plan, &name, |_| stack.clone());
            continue;
        }
        let Some(current) = rd.replication_layer() else {
            continue;
        };
        let engine = choose(&ctx, cluster, runtime, &rd, &node_refs)?;
        if setting(cluster, &rd) == Setting::Auto && current == LayerKind::Drbd {
            plan.reply(chosen_note(&ctx, &rd, engine, runtime, &node_refs));
        }
        if engine == current {
            continue;
        }
        set_stack(cluster, plan, &name, |stack| {
            stack
                .iter()
                .map(|l| if l.is_replication() { engine } else { *l })
                .collect()
        });
    }
    Ok(())
}

/// Gives definition `name` the stack `change` makes of its own, in the plan: in the plan's
/// ops that put it, else in a new op before its first resource.
fn set_stack(
    cluster: &Cluster,
    plan: &mut Plan,
    name: &ResourceName,
    change: impl Fn(&[LayerKind]) -> Vec<LayerKind>,
) {
    let mut updated_in_plan = false;
    for op in &mut plan.ops {
        if let Op::PutResourceDefinition(planned) = op
            && planned.name == *name
        {
            planned.layer_stack = change(&planned.layer_stack);
            updated_in_plan = true;
        }
    }
    if updated_in_plan {
        return;
    }
    let Some(mut updated) = cluster.resource_definition(name).cloned() else {
        return;
    };
    updated.layer_stack = change(&updated.layer_stack);
    let position = plan
        .ops
        .iter()
        .position(|op| matches!(op, Op::PutResource { resource, .. } if resource == name))
        .unwrap_or(plan.ops.len());
    plan.ops
        .insert(position, Op::PutResourceDefinition(updated));
}

/// The note saying which engine `auto` chose, and why.
fn chosen_note(
    ctx: &Context,
    rd: &ResourceDefinition,
    engine: LayerKind,
    runtime: &Runtime,
    nodes: &[&NodeName],
) -> ApiCallRc {
    ctx.info(
        code::INFO_REPLICATION_ENGINE,
        format!(
            "Resource '{}' is replicated by the {} engine: {}.",
            rd.name,
            name(engine),
            auto_reason(engine, runtime, nodes)
        ),
    )
    .obj_ref("RscDfn", rd.name.as_str())
}

/// Why `auto` chose `engine` for `nodes`.
fn auto_reason(engine: LayerKind, runtime: &Runtime, nodes: &[&NodeName]) -> String {
    match engine {
        LayerKind::Drbd => "every node of the resource runs DRBD 9".to_string(),
        _ => format!(
            "DRBD 9 is not on every node ({})",
            without(runtime, nodes, LayerKind::Drbd).join("; ")
        ),
    }
}

/// `DrbdOptions/*` options (by their DRBD names) that MIRROR honours.
pub const MIRROR_OPTIONS: &[&str] = &[
    "Net/protocol",
    "Net/ping-timeout",
    "Net/timeout",
    "Resource/quorum",
    "Resource/on-no-quorum",
    "PeerDevice/c-max-rate",
    "Disk/al-extents",
];

/// `DrbdOptions/*` keys the controller itself acts on, whatever the engine.
pub const CONTROLLER_OPTIONS: &[&str] = &["auto-add-quorum-tiebreaker"];

/// The note for `DrbdOptions/*` keys among `keys` that MIRROR ignores, when they are set where
/// MIRROR resources read them (`what` names the object, e.g. "resource definition 'web'").
pub fn ignored_options_note<'a>(
    ctx: &Context,
    keys: impl IntoIterator<Item = &'a String>,
    what: &str,
) -> Option<ApiCallRc> {
    let ignored: Vec<&str> = keys
        .into_iter()
        .filter_map(|key| {
            key.strip_prefix(super::properties::DRBD_OPTIONS_PREFIX)
                .map(|name| (key, name))
        })
        .filter(|(_, name)| !MIRROR_OPTIONS.contains(name) && !CONTROLLER_OPTIONS.contains(name))
        .map(|(key, _)| key.as_str())
        .collect();
    if ignored.is_empty() {
        return None;
    }
    Some(
        ctx.warn(
            code::WARN_OPTION_IGNORED,
            format!(
                "The MIRROR engine ignores {}, set on {what}.",
                ignored
                    .iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .cause(format!(
            "MIRROR honours the DRBD options {}; the others apply only to resources the kernel's \
             DRBD replicates.",
            MIRROR_OPTIONS.join(", ")
        ))
        .correction(
            "Nothing to do if the setting is meant for DRBD resources; otherwise delete it.",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{
        add_resource, commit, engines_runtime, replicated_group, spawn, tutorial_cluster,
    };
    use crate::app::{resource_definitions, resources};
    use LayerKind::{Drbd, Mirror};
    use ferrite_types::rest;

    fn stack_of(cluster: &Cluster, name: &str) -> Vec<LayerKind> {
        cluster.resource_definitions[&name.parse::<ResourceName>().unwrap()]
            .layer_stack
            .clone()
    }

    fn code_of(failure: Failure) -> u64 {
        failure.0[0].ret_code().code()
    }

    #[test]
    fn drbd_asked_is_mirror_where_a_node_lacks_drbd_9() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd", "storage"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);
        let note = replies
            .iter()
            .find(|r| r.ret_code().code() == code::INFO_REPLICATION_ENGINE)
            .expect("the choice is explained");
        assert!(note.message.contains("MIRROR engine"), "{}", note.message);
        assert!(
            note.message.contains("DRBD kernel module not loaded"),
            "{}",
            note.message
        );
        // The members got node-ids and ports, the definition its secret.
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        assert!(rd.secret.is_some());
        assert!(
            rd.resources
                .values()
                .all(|r| r.node_id.is_some() && r.port.is_some())
        );
    }

    #[test]
    fn drbd_asked_is_drbd_where_every_node_runs_it_unless_a_property_says_mirror() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let runtime = engines_runtime(&cluster, &[Drbd, Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![Drbd, LayerKind::Storage]);

        cluster
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "mirror".into());
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "db"));
        assert_eq!(stack_of(&cluster, "db"), vec![Mirror, LayerKind::Storage]);
    }

    #[test]
    fn a_layer_list_naming_mirror_asks_for_mirror() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["mirror", "storage"]);
        let runtime = engines_runtime(&cluster, &[Drbd, Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);
        assert!(
            !replies
                .iter()
                .any(|r| r.ret_code().code() == code::INFO_REPLICATION_ENGINE),
            "nothing was chosen for the user"
        );
    }

    #[test]
    fn a_forced_engine_a_node_cannot_run_is_refused_with_the_reason() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let group: ferrite_types::ResourceGroupName = "my_ssd_group".parse().unwrap();
        cluster
            .resource_groups
            .get_mut(&group)
            .unwrap()
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "drbd".into());
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let err = spawn(&cluster, &runtime, "web").unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_NOT_ENOUGH_NODES);
        let cause = err.0[0].cause.clone().unwrap();
        assert!(
            cause.contains("cannot run the DRBD replication engine")
                && cause.contains("DRBD kernel module not loaded"),
            "{cause}"
        );

        // Placing it by hand on a node is refused the same way.
        commit(&mut cluster, &runtime, |c, r| {
            spawn_definition_only(c, r, "db")
        });
        let err = resources::create(&cluster, &runtime, "db", &create_on(&["node1"])).unwrap_err();
        assert_eq!(
            err.0[0].ret_code().code(),
            code::FAIL_STLT_DOES_NOT_SUPPORT_LAYER
        );
        assert!(
            err.0[0]
                .cause
                .as_deref()
                .unwrap()
                .contains("DRBD kernel module not loaded"),
            "{err:?}"
        );
    }

    /// Every node dry-runs DRBD (`--drbd-dry-run`) and runs MIRROR for real.
    fn dry_run_drbd(runtime: &mut Runtime) {
        for reported in runtime.values_mut() {
            let caps = reported.capabilities.as_mut().unwrap();
            caps.dry_run_layers = vec![Drbd];
        }
    }

    #[test]
    fn dry_run_nodes_get_drbd_only_when_it_is_forced() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd", "storage"]);
        let mut runtime = engines_runtime(&cluster, &[Mirror]);
        dry_run_drbd(&mut runtime);
        // auto: a dry run is no DRBD for real I/O.
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);

        let group: ferrite_types::ResourceGroupName = "my_ssd_group".parse().unwrap();
        cluster
            .resource_groups
            .get_mut(&group)
            .unwrap()
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "drbd".into());
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "db"));
        assert_eq!(stack_of(&cluster, "db"), vec![Drbd, LayerKind::Storage]);
        // A node added by hand to it may dry-run DRBD too.
        let rd = &cluster.resource_definitions[&"db".parse::<ResourceName>().unwrap()];
        let spare = ["node1", "node2", "node3", "node4"]
            .into_iter()
            .find(|n| !rd.resources.contains_key(&n.parse::<NodeName>().unwrap()))
            .unwrap();
        assert_eq!(
            node_refusal(&cluster, &runtime, rd, &spare.parse().unwrap()),
            None
        );
        // Without the dry run, the node cannot.
        let mut without = runtime.clone();
        without
            .get_mut(&spare.parse::<NodeName>().unwrap())
            .unwrap()
            .capabilities
            .as_mut()
            .unwrap()
            .dry_run_layers
            .clear();
        assert!(node_refusal(&cluster, &without, rd, &spare.parse().unwrap()).is_some());

        // Without a layer list and with drbd forced, the default is DRBD on dry-run nodes.
        let mut plain = tutorial_cluster();
        plain
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "drbd".into());
        let mut runtime = engines_runtime(&plain, &[Mirror]);
        dry_run_drbd(&mut runtime);
        commit(&mut plain, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&plain, "web"), vec![Drbd, LayerKind::Storage]);
    }

    fn spawn_definition_only(
        cluster: &Cluster,
        runtime: &Runtime,
        name: &str,
    ) -> Result<Plan, Failure> {
        crate::app::resource_groups::spawn(
            cluster,
            runtime,
            "my_ssd_group",
            &rest::ResourceGroupSpawn {
                resource_definition_name: name.into(),
                volume_sizes: vec![1 << 20],
                definitions_only: true,
                ..Default::default()
            },
        )
    }

    fn create_on(nodes: &[&str]) -> Vec<rest::ResourceCreate> {
        nodes
            .iter()
            .map(|node| rest::ResourceCreate {
                resource: rest::Resource {
                    node_name: node.to_string(),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn nodes_sharing_no_engine_are_refused_and_a_placed_engine_stays() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["drbd"]);
        let mut runtime = engines_runtime(&cluster, &[Mirror]);
        let node1: NodeName = "node1".parse().unwrap();
        runtime.get_mut(&node1).unwrap().capabilities =
            Some(crate::app::testing::capabilities(&[Drbd]));
        commit(&mut cluster, &runtime, |c, r| {
            spawn_definition_only(c, r, "web")
        });
        let mut plan =
            resources::create(&cluster, &runtime, "web", &create_on(&["node1", "node2"])).unwrap();
        let err = complete(&cluster, &runtime, &mut plan).unwrap_err();
        assert_eq!(code_of(err.clone()), code::FAIL_STLT_DOES_NOT_SUPPORT_LAYER);
        assert!(
            err.0[0]
                .message
                .contains("No replication engine runs on every node")
        );

        // On node2 and node3 it is MIRROR; node1 (DRBD only) cannot join later.
        commit(&mut cluster, &runtime, |c, r| {
            resources::create(c, r, "web", &create_on(&["node2", "node3"]))
        });
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);
        let err = resources::create(&cluster, &runtime, "web", &create_on(&["node1"])).unwrap_err();
        assert_eq!(code_of(err), code::FAIL_STLT_DOES_NOT_SUPPORT_LAYER);
        // A LINSTOR client's layer list (DRBD) fits the MIRROR definition.
        let mut body = create_on(&["node4"]);
        body[0].layer_list = Some(vec![Drbd, LayerKind::Storage]);
        resources::create(&cluster, &runtime, "web", &body).unwrap();
        // Forcing another engine on it now is refused.
        let forced = rest::ResourceDefinitionModify {
            override_props: [(PROP_REPLICATION_ENGINE.to_string(), "drbd".to_string())].into(),
            ..Default::default()
        };
        let err = resource_definitions::modify(&cluster, "web", &forced).unwrap_err();
        assert_eq!(code_of(err), code::FAIL_IN_USE);
    }

    #[test]
    fn options_mirror_ignores_get_a_warning() {
        let mut cluster = tutorial_cluster();
        replicated_group(&mut cluster, &["mirror"]);
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        let body = rest::ResourceDefinitionModify {
            override_props: [
                ("DrbdOptions/Net/protocol".to_string(), "C".to_string()),
                (
                    "DrbdOptions/Disk/disk-flushes".to_string(),
                    "no".to_string(),
                ),
            ]
            .into(),
            ..Default::default()
        };
        let plan = resource_definitions::modify(&cluster, "web", &body).unwrap();
        let warning = plan
            .replies
            .iter()
            .find(|r| r.ret_code().code() == code::WARN_OPTION_IGNORED)
            .expect("a note");
        assert!(warning.message.contains("'DrbdOptions/Disk/disk-flushes'"));
        assert!(!warning.message.contains("protocol"));
        let honoured = rest::ResourceDefinitionModify {
            override_props: [("DrbdOptions/Resource/quorum".to_string(), "off".to_string())].into(),
            ..Default::default()
        };
        let plan = resource_definitions::modify(&cluster, "web", &honoured).unwrap();
        assert!(plan.replies.iter().all(|r| !r.ret_code().is_warning()));
    }

    /// The entries of `replies` with `code_value`.
    fn entries(replies: &[ApiCallRc], code_value: u64) -> Vec<&ApiCallRc> {
        replies
            .iter()
            .filter(|r| r.ret_code().code() == code_value)
            .collect()
    }

    /// The one note on the default stack among `replies`.
    fn default_note_of(replies: &[ApiCallRc]) -> &ApiCallRc {
        let notes = entries(replies, code::INFO_REPLICATION_ENGINE);
        assert_eq!(notes.len(), 1, "{replies:?}");
        assert!(notes[0].message.contains("no layer list"), "{notes:?}");
        notes[0]
    }

    /// Places `nodes` of the existing definition `name` without a layer list, as
    /// `linstor resource create` does; returns the answer.
    fn place(
        cluster: &mut Cluster,
        runtime: &Runtime,
        name: &str,
        nodes: &[&str],
    ) -> Vec<ApiCallRc> {
        commit(cluster, runtime, |c, r| {
            resources::create(c, r, name, &create_on(nodes))
        })
        .0
    }

    /// Online nodes with room in their pools whose satellites have not reported their layers.
    fn layers_unknown(cluster: &Cluster) -> Runtime {
        let mut runtime = engines_runtime(cluster, &[]);
        for reported in runtime.values_mut() {
            reported.capabilities = None;
        }
        runtime
    }

    fn runs(runtime: &mut Runtime, node: &str, engines: &[LayerKind]) {
        let node: NodeName = node.parse().unwrap();
        runtime.get_mut(&node).unwrap().capabilities =
            Some(crate::app::testing::capabilities(engines));
    }

    #[test]
    fn without_a_layer_list_the_tutorial_is_replicated_by_the_engine_its_nodes_run() {
        // The article's tutorial: my_ssd_group has no layer list.
        let mut cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);
        let note = default_note_of(&replies);
        assert!(note.message.contains("MIRROR engine"), "{}", note.message);
        assert!(
            note.message.contains("DRBD kernel module not loaded"),
            "{}",
            note.message
        );
        assert!(entries(&replies, code::WARN_NOT_REPLICATED).is_empty());
        // Replicated like a definition that asked for it: a secret, node-ids, ports, minors
        // and a tiebreaker for its two disks.
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        assert!(rd.secret.is_some());
        assert!(rd.volume_definitions.values().all(|vd| vd.minor.is_some()));
        assert!(
            rd.resources
                .values()
                .all(|r| r.node_id.is_some() && r.port.is_some())
        );
        assert_eq!(rd.resources.values().filter(|r| !r.diskless).count(), 2);
        assert!(rd.resources.values().any(|r| r.tiebreaker));

        // Where every node runs DRBD 9, the kernel's DRBD.
        let runtime = engines_runtime(&cluster, &[Drbd, Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "db"));
        assert_eq!(stack_of(&cluster, "db"), vec![Drbd, LayerKind::Storage]);
        assert!(
            default_note_of(&replies)
                .message
                .contains("every node of the resource runs DRBD 9")
        );
    }

    #[test]
    fn a_single_replica_without_a_layer_list_is_replicated_too() {
        // As in LINSTOR: replicas can be added later.
        let mut cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| {
            spawn_definition_only(c, r, "web")
        });
        assert!(stack_of(&cluster, "web").is_empty(), "pending until placed");
        let replies = place(&mut cluster, &runtime, "web", &["node1"]);
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);
        default_note_of(&replies);
        let rd = &cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()];
        assert!(rd.secret.is_some());
        assert!(rd.resources.values().all(|r| r.node_id.is_some()));
        // A second replica joins the engine; the stack is not chosen again.
        let replies = place(&mut cluster, &runtime, "web", &["node2"]);
        assert!(entries(&replies, code::INFO_REPLICATION_ENGINE).is_empty());
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);
    }

    #[test]
    fn without_a_layer_list_nodes_sharing_no_engine_get_storage_alone() {
        let mut cluster = tutorial_cluster();
        let mut runtime = engines_runtime(&cluster, &[Mirror]);
        runs(&mut runtime, "node1", &[Drbd]);
        runs(&mut runtime, "node4", &[Drbd, Mirror]);
        for name in ["web", "db", "both"] {
            commit(&mut cluster, &runtime, |c, r| {
                spawn_definition_only(c, r, name)
            });
        }

        // node1 runs DRBD 9 only, node2 MIRROR only: no engine runs on both.
        let replies = place(&mut cluster, &runtime, "web", &["node1", "node2"]);
        assert_eq!(stack_of(&cluster, "web"), vec![LayerKind::Storage]);
        let note = default_note_of(&replies);
        assert!(note.ret_code().is_info());
        assert!(note.message.contains("not replicated"), "{}", note.message);
        assert!(
            note.message.contains("Without DRBD 9: 'node2'")
                && note.message.contains("Without MIRROR: 'node1'"),
            "{}",
            note.message
        );
        assert!(note.correction.is_some());
        // Two independent volumes: the warning says so.
        assert_eq!(entries(&replies, code::WARN_NOT_REPLICATED).len(), 1);
        assert!(
            !cluster.resource_definitions[&"web".parse::<ResourceName>().unwrap()]
                .resources
                .values()
                .any(|r| r.node_id.is_some() || r.tiebreaker)
        );
        // The choice stays: a node running MIRROR added later gets STORAGE as well.
        let replies = place(&mut cluster, &runtime, "web", &["node3"]);
        assert!(entries(&replies, code::INFO_REPLICATION_ENGINE).is_empty());
        assert_eq!(stack_of(&cluster, "web"), vec![LayerKind::Storage]);

        // node2 and node3 share MIRROR; node4 runs both engines, node2 only MIRROR.
        place(&mut cluster, &runtime, "db", &["node2", "node3"]);
        assert_eq!(stack_of(&cluster, "db"), vec![Mirror, LayerKind::Storage]);
        place(&mut cluster, &runtime, "both", &["node4", "node2"]);
        assert_eq!(stack_of(&cluster, "both"), vec![Mirror, LayerKind::Storage]);
    }

    #[test]
    fn nodes_without_an_engine_or_not_known_yet_get_storage_alone() {
        // No engine anywhere: one replica, STORAGE, explained, no warning about replicas.
        let mut cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[]);
        commit(&mut cluster, &runtime, |c, r| {
            spawn_definition_only(c, r, "web")
        });
        let replies = place(&mut cluster, &runtime, "web", &["node1"]);
        assert_eq!(stack_of(&cluster, "web"), vec![LayerKind::Storage]);
        let note = default_note_of(&replies);
        assert!(
            note.message.contains("ferrite-mirrord not found"),
            "{}",
            note.message
        );
        assert!(entries(&replies, code::WARN_NOT_REPLICATED).is_empty());

        // Satellites that have not reported their layers run no engine as far as the default
        // goes: the definition is not given one they may not run.
        let mut cluster = tutorial_cluster();
        let runtime = layers_unknown(&cluster);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![LayerKind::Storage]);
        assert!(
            default_note_of(&replies)
                .message
                .contains("its layers are not known yet")
        );
        assert_eq!(entries(&replies, code::WARN_NOT_REPLICATED).len(), 1);
    }

    #[test]
    fn an_explicit_layer_list_is_honoured_as_before() {
        let mut cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[Drbd, Mirror]);
        // -l storage on the group: STORAGE on nodes that run both engines, nothing chosen.
        replicated_group(&mut cluster, &["storage"]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![LayerKind::Storage]);
        assert!(entries(&replies, code::INFO_REPLICATION_ENGINE).is_empty());
        assert_eq!(entries(&replies, code::WARN_NOT_REPLICATED).len(), 1);

        // -l storage when placing a definition without one.
        replicated_group(&mut cluster, &[]);
        commit(&mut cluster, &runtime, |c, r| {
            spawn_definition_only(c, r, "db")
        });
        assert!(
            stack_of(&cluster, "db").is_empty(),
            "an empty list is no list"
        );
        let mut body = create_on(&["node1", "node2"]);
        body[0].layer_list = Some(vec![LayerKind::Storage]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| {
            resources::create(c, r, "db", &body)
        });
        assert_eq!(stack_of(&cluster, "db"), vec![LayerKind::Storage]);
        assert!(entries(&replies, code::INFO_REPLICATION_ENGINE).is_empty());

        // A definition created with -l storage.
        let create: rest::ResourceDefinitionCreate = serde_json::from_value(serde_json::json!({
            "resource_definition": {"name": "plain", "layer_data": [{"type": "STORAGE"}]}
        }))
        .unwrap();
        commit(&mut cluster, &runtime, |c, _| {
            resource_definitions::create(c, &create)
        });
        assert_eq!(stack_of(&cluster, "plain"), vec![LayerKind::Storage]);

        // -l drbd,storage on nodes without any engine is refused, placed by hand or
        // automatically.
        let mut cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[]);
        commit(&mut cluster, &runtime, |c, r| {
            spawn_definition_only(c, r, "web")
        });
        let mut body = create_on(&["node1"]);
        body[0].layer_list = Some(vec![Drbd, LayerKind::Storage]);
        let err = resources::create(&cluster, &runtime, "web", &body).unwrap_err();
        assert_eq!(code_of(err), code::FAIL_STLT_DOES_NOT_SUPPORT_LAYER);
        replicated_group(&mut cluster, &["drbd", "storage"]);
        let err = spawn(&cluster, &runtime, "db").unwrap_err();
        assert_eq!(code_of(err), code::FAIL_NOT_ENOUGH_NODES);
    }

    #[test]
    fn the_engine_property_steers_the_default() {
        let mut cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[Drbd, Mirror]);
        cluster
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "mirror".into());
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        assert_eq!(stack_of(&cluster, "web"), vec![Mirror, LayerKind::Storage]);
        assert!(
            default_note_of(&replies)
                .message
                .contains(PROP_REPLICATION_ENGINE)
        );

        // Forcing an engine the nodes do not run leaves the definition unreplicated, and the
        // note says why.
        cluster
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "drbd".into());
        let runtime = engines_runtime(&cluster, &[Mirror]);
        let (replies, _) = commit(&mut cluster, &runtime, |c, r| spawn(c, r, "db"));
        assert_eq!(stack_of(&cluster, "db"), vec![LayerKind::Storage]);
        let note = default_note_of(&replies);
        assert!(
            note.message.contains("asks for DRBD")
                && note.message.contains("DRBD kernel module not loaded"),
            "{}",
            note.message
        );
    }

    #[test]
    fn a_pending_default_and_the_chosen_stacks_survive_a_restart() {
        let mut cluster = tutorial_cluster();
        let runtime = engines_runtime(&cluster, &[Mirror]);
        commit(&mut cluster, &runtime, |c, r| spawn(c, r, "web"));
        commit(&mut cluster, &runtime, |c, r| {
            spawn_definition_only(c, r, "later")
        });
        let unknown = layers_unknown(&cluster);
        commit(&mut cluster, &unknown, |c, r| spawn(c, r, "plain"));
        let dir = tempfile::tempdir().unwrap();
        let mut reloaded = crate::app::testing::reloaded(&cluster, dir.path());
        for name in ["web", "later", "plain"] {
            assert_eq!(
                stack_of(&reloaded, name),
                stack_of(&cluster, name),
                "{name}"
            );
        }
        assert_eq!(stack_of(&reloaded, "web"), vec![Mirror, LayerKind::Storage]);
        assert_eq!(stack_of(&reloaded, "plain"), vec![LayerKind::Storage]);
        // Still the default after the restart: its first placement chooses it.
        assert!(stack_of(&reloaded, "later").is_empty());
        let runtime = engines_runtime(&reloaded, &[Mirror]);
        let replies = place(&mut reloaded, &runtime, "later", &["node1", "node2"]);
        default_note_of(&replies);
        assert_eq!(
            stack_of(&reloaded, "later"),
            vec![Mirror, LayerKind::Storage]
        );
        let again = crate::app::testing::reloaded(&reloaded, tempfile::tempdir().unwrap().path());
        assert_eq!(stack_of(&again, "later"), vec![Mirror, LayerKind::Storage]);
    }

    #[test]
    fn settings_parse_in_any_case() {
        assert_eq!(Setting::parse("MIRROR"), Some(Setting::Mirror));
        assert_eq!(Setting::parse("Drbd"), Some(Setting::Drbd));
        assert_eq!(Setting::parse("auto"), Some(Setting::Auto));
        assert!(
            check_value("kernel")
                .unwrap_err()
                .contains("auto, drbd or mirror")
        );
    }

    #[test]
    fn a_request_for_drbd_fits_either_engine() {
        use LayerKind::*;
        assert!(stacks_match(&[Drbd, Storage], &[Mirror, Storage]));
        assert!(stacks_match(&[Drbd, Storage], &[Drbd, Storage]));
        assert!(!stacks_match(&[Mirror, Storage], &[Drbd, Storage]));
        assert!(!stacks_match(&[Storage], &[Mirror, Storage]));
    }

    #[test]
    fn the_nearest_setting_wins() {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "res", "node1", "pool_ssd");
        let name: ResourceName = "res".parse().unwrap();
        cluster
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "mirror".into());
        assert_eq!(
            setting(&cluster, &cluster.resource_definitions[&name]),
            Setting::Mirror
        );
        cluster
            .resource_definitions
            .get_mut(&name)
            .unwrap()
            .props
            .insert(PROP_REPLICATION_ENGINE.into(), "DRBD".into());
        assert_eq!(
            setting(&cluster, &cluster.resource_definitions[&name]),
            Setting::Drbd
        );
    }
}
