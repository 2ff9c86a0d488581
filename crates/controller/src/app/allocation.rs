//! What the controller allocates for replicated resources, as LINSTOR does: a shared secret per
//! resource definition, a node-id (0–31) per resource, a TCP port per resource that is unique on
//! its node (7000–7999 by default, `TcpPortAutoRange`), and a device minor per volume
//! definition that is unique in the cluster (1000–49999 by default, `MinorNrAutoRange`).
//!
//! Every plan passes through [`complete`] before it is committed, so no path that creates a
//! replicated object can forget an allocation, and numbers are chosen against the graph plus
//! everything earlier in the same plan. A number stays allocated for as long as its object
//! exists (a resource being deleted keeps its node-id and port until it is forgotten), so a
//! number is never reused while anything may still use it. [`backfill`] allocates what older
//! stores lack.

use std::collections::{BTreeSet, HashMap};
use std::ops::RangeInclusive;

use ferrite_types::api_call_rc::code;
use ferrite_types::{NodeName, ResourceName, VolumeNumber};

use super::{Context, Failure, Object, Operation, Plan};
use crate::model::{Cluster, Op, ResourceDefinition};

/// The highest node-id: DRBD 9's 32 peers.
pub const NODE_ID_MAX: u8 = 31;

/// LINSTOR's default TCP port range for replication, per node.
pub const DEFAULT_PORT_RANGE: RangeInclusive<u16> = 7000..=7999;

/// LINSTOR's default minor range, cluster-wide.
pub const DEFAULT_MINOR_RANGE: RangeInclusive<u32> = 1000..=49999;

/// The highest minor the kernel allows (2^20 − 1).
pub const MINOR_MAX: u32 = (1 << 20) - 1;

/// Controller (or node, for ports) property overriding the port range: `7000-7999`.
pub const PROP_TCP_PORT_RANGE: &str = "TcpPortAutoRange";

/// Controller property overriding the minor range: `1000-49999`.
pub const PROP_MINOR_RANGE: &str = "MinorNrAutoRange";

/// The length of a generated shared secret, LINSTOR's.
pub const SECRET_LENGTH: usize = 20;

const CTX: Context = Context::new(Operation::Create, Object::Resource);

/// Parses `low-high`.
fn range<T: std::str::FromStr + PartialOrd + Copy>(text: &str) -> Option<RangeInclusive<T>> {
    let (low, high) = text.split_once('-')?;
    let low: T = low.trim().parse().ok()?;
    let high: T = high.trim().parse().ok()?;
    (low <= high).then_some(low..=high)
}

fn port_range(cluster: &Cluster, node: &NodeName) -> RangeInclusive<u16> {
    cluster
        .node(node)
        .and_then(|n| n.props.get(PROP_TCP_PORT_RANGE))
        .or_else(|| cluster.props.get(PROP_TCP_PORT_RANGE))
        .and_then(|text| range(text))
        .unwrap_or(DEFAULT_PORT_RANGE)
}

fn minor_range(cluster: &Cluster) -> RangeInclusive<u32> {
    cluster
        .props
        .get(PROP_MINOR_RANGE)
        .and_then(|text| range(text))
        .map(|r: RangeInclusive<u32>| *r.start()..=(*r.end()).min(MINOR_MAX))
        .unwrap_or(DEFAULT_MINOR_RANGE)
}

/// A new random shared secret.
pub fn new_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut secret = String::with_capacity(SECRET_LENGTH);
    while secret.len() < SECRET_LENGTH {
        for byte in uuid::Uuid::new_v4().as_bytes() {
            // 248 is the largest multiple of 62 below 256: no bias.
            if *byte < 248 && secret.len() < SECRET_LENGTH {
                secret.push(ALPHABET[(*byte % 62) as usize] as char);
            }
        }
    }
    secret
}

/// What is taken, in the graph and by the plan so far.
struct Taken {
    node_ids: HashMap<ResourceName, BTreeSet<u8>>,
    ports: HashMap<NodeName, BTreeSet<u16>>,
    minors: BTreeSet<u32>,
    /// Which volume definition holds each minor, to tell a clash from the owner itself.
    minor_owner: HashMap<u32, (ResourceName, VolumeNumber)>,
}

impl Taken {
    fn of(cluster: &Cluster) -> Taken {
        let mut taken = Taken {
            node_ids: HashMap::new(),
            ports: HashMap::new(),
            minors: BTreeSet::new(),
            minor_owner: HashMap::new(),
        };
        for rd in cluster.resource_definitions.values() {
            for resource in rd.resources.values() {
                if let Some(id) = resource.node_id {
                    taken
                        .node_ids
                        .entry(rd.name.clone())
                        .or_default()
                        .insert(id);
                }
                if let Some(port) = resource.port {
                    taken
                        .ports
                        .entry(resource.node.clone())
                        .or_default()
                        .insert(port);
                }
            }
            for vd in rd.volume_definitions.values() {
                if let Some(minor) = vd.minor {
                    taken.minors.insert(minor);
                    taken
                        .minor_owner
                        .insert(minor, (rd.name.clone(), vd.number));
                }
            }
        }
        taken
    }

    fn node_id(&mut self, rd: &ResourceName) -> Result<u8, Failure> {
        let used = self.node_ids.entry(rd.clone()).or_default();
        let id = (0..=NODE_ID_MAX)
            .find(|id| !used.contains(id))
            .ok_or_else(|| {
                Failure::from(
                    CTX.error(
                        code::FAIL_POOL_EXHAUSTED_NODE_ID,
                        format!("Resource '{rd}' has no free node-id: it has 32 members."),
                    )
                    .cause("A replicated resource has at most 32 members (node-ids 0–31).")
                    .correction("Delete a member before adding another."),
                )
            })?;
        used.insert(id);
        Ok(id)
    }

    fn port(&mut self, cluster: &Cluster, node: &NodeName) -> Result<u16, Failure> {
        let range = port_range(cluster, node);
        let used = self.ports.entry(node.clone()).or_default();
        let port = range.clone().find(|p| !used.contains(p)).ok_or_else(|| {
            Failure::from(
                CTX.error(
                    code::FAIL_POOL_EXHAUSTED_TCP_PORT,
                    format!("Node '{node}' has no free replication port."),
                )
                .cause(format!(
                    "Every port of {}-{} is taken by a resource on the node.",
                    range.start(),
                    range.end()
                ))
                .correction(format!(
                    "Widen the range with the property {PROP_TCP_PORT_RANGE} (controller or node), e.g. 7000-9999."
                )),
            )
        })?;
        used.insert(port);
        Ok(port)
    }

    fn minor(
        &mut self,
        cluster: &Cluster,
        owner: (ResourceName, VolumeNumber),
    ) -> Result<u32, Failure> {
        let range = minor_range(cluster);
        let minor = range
            .clone()
            .find(|m| !self.minors.contains(m))
            .ok_or_else(|| {
                Failure::from(
                    CTX.error(
                        code::FAIL_POOL_EXHAUSTED_MINOR_NR,
                        "No free device minor is left.".to_string(),
                    )
                    .cause(format!(
                        "Every minor of {}-{} is taken by a volume.",
                        range.start(),
                        range.end()
                    ))
                    .correction(format!(
                        "Widen the range with the controller property {PROP_MINOR_RANGE}."
                    )),
                )
            })?;
        self.minors.insert(minor);
        self.minor_owner.insert(minor, owner);
        Ok(minor)
    }

    /// Takes a minor a request asked for, unless another volume has it.
    fn requested_minor(
        &mut self,
        minor: u32,
        owner: (ResourceName, VolumeNumber),
    ) -> Result<(), Failure> {
        match self.minor_owner.get(&minor) {
            Some(holder) if *holder != owner => Err(Failure::from(
                CTX.error(
                    code::FAIL_INVLD_MINOR_NR,
                    format!("Minor {minor} is taken."),
                )
                .cause(format!(
                    "Volume {} of resource definition '{}' has it.",
                    holder.1, holder.0
                ))
                .correction("Leave the minor out to get a free one, or choose another."),
            )),
            _ => {
                self.minors.insert(minor);
                self.minor_owner.insert(minor, owner);
                Ok(())
            }
        }
    }
}

/// Fills in every allocation the plan's replicated objects lack.
pub fn complete(cluster: &Cluster, plan: &mut Plan) -> Result<(), Failure> {
    // What is taken is read from the whole cluster: not for a plan that allocates nothing (a
    // property change), which would pay for it at every call.
    let allocates = plan.ops.iter().any(|op| {
        matches!(
            op,
            Op::PutResourceDefinition(_) | Op::PutVolumeDefinition { .. } | Op::PutResource { .. }
        )
    });
    if !allocates {
        return Ok(());
    }
    // The definitions as they will be after the plan: a definition created or changed by the
    // plan decides whether its volumes and resources are replicated.
    let mut replicated: HashMap<ResourceName, bool> = HashMap::new();
    let is_replicated = |replicated: &HashMap<ResourceName, bool>, name: &ResourceName| {
        replicated.get(name).copied().unwrap_or_else(|| {
            cluster
                .resource_definition(name)
                .is_some_and(ResourceDefinition::is_replicated)
        })
    };
    for op in &plan.ops {
        if let Op::PutResourceDefinition(rd) = op {
            replicated.insert(rd.name.clone(), rd.is_replicated());
        }
    }
    // Nor for a plan whose objects are all unreplicated (a STORAGE-only spawn): every arm
    // below would pass them by, and reading the cluster would cost each spawn a walk over
    // every definition.
    let allocates = plan.ops.iter().any(|op| match op {
        Op::PutResourceDefinition(rd) => rd.is_replicated(),
        Op::PutVolumeDefinition { resource, .. } | Op::PutResource { resource, .. } => {
            is_replicated(&replicated, resource)
        }
        _ => false,
    });
    if !allocates {
        return Ok(());
    }
    let mut taken = Taken::of(cluster);
    // Known before any op is looked at: the stack a plan chooses (`app::engine`) may come after
    // the volume definitions it creates (a restore into a definition placed for the first time).
    let mut put_volumes: Vec<(ResourceName, VolumeNumber)> = Vec::new();
    for op in &plan.ops {
        if let Op::PutVolumeDefinition {
            resource,
            volume_definition,
        } = op
        {
            put_volumes.push((resource.clone(), volume_definition.number));
        }
    }
    let mut extra = Vec::new();
    for op in &mut plan.ops {
        match op {
            Op::PutResourceDefinition(rd) if rd.is_replicated() => {
                let existing = cluster.resource_definition(&rd.name);
                if rd.secret.is_none() {
                    rd.secret = Some(
                        existing
                            .and_then(|e| e.secret.clone())
                            .unwrap_or_else(new_secret),
                    );
                }
                // Volume definitions that exist already get their minors now.
                if let Some(existing) = existing {
                    for vd in existing.volume_definitions.values().filter(|vd| {
                        vd.minor.is_none() && !put_volumes.contains(&(rd.name.clone(), vd.number))
                    }) {
                        let mut vd = vd.clone();
                        vd.minor = Some(taken.minor(cluster, (rd.name.clone(), vd.number))?);
                        extra.push(Op::PutVolumeDefinition {
                            resource: rd.name.clone(),
                            volume_definition: vd,
                        });
                    }
                }
            }
            Op::PutVolumeDefinition {
                resource,
                volume_definition: vd,
            } if is_replicated(&replicated, resource) => {
                let owner = (resource.clone(), vd.number);
                let existing = cluster
                    .resource_definition(resource)
                    .and_then(|rd| rd.volume_definitions.get(&vd.number))
                    .filter(|e| e.uuid == vd.uuid)
                    .and_then(|e| e.minor);
                match (vd.minor, existing) {
                    (Some(minor), _) => taken.requested_minor(minor, owner)?,
                    (None, Some(minor)) => vd.minor = Some(minor),
                    (None, None) => vd.minor = Some(taken.minor(cluster, owner)?),
                }
            }
            Op::PutResource { resource, placed } if is_replicated(&replicated, resource) => {
                let existing = cluster
                    .resource_definition(resource)
                    .and_then(|rd| rd.resources.get(&placed.node))
                    .filter(|e| e.uuid == placed.uuid);
                if placed.node_id.is_none() {
                    placed.node_id = match existing.and_then(|e| e.node_id) {
                        Some(id) => Some(id),
                        None => Some(taken.node_id(resource)?),
                    };
                }
                if placed.port.is_none() {
                    placed.port = match existing.and_then(|e| e.port) {
                        Some(port) => Some(port),
                        None => Some(taken.port(cluster, &placed.node)?),
                    };
                }
            }
            _ => {}
        }
    }
    plan.ops.extend(extra);
    Ok(())
}

/// The ops that allocate what replicated objects in an older store lack.
pub fn backfill(cluster: &Cluster) -> Result<Plan, Failure> {
    let mut plan = Plan::new();
    for rd in cluster
        .resource_definitions
        .values()
        .filter(|rd| rd.is_replicated())
    {
        if rd.secret.is_none() {
            plan.op(Op::PutResourceDefinition(rd.clone()));
        } else if rd.volume_definitions.values().any(|vd| vd.minor.is_none()) {
            // Re-putting the definition makes `complete` allocate its volumes' minors.
            plan.op(Op::PutResourceDefinition(rd.clone()));
        }
        for resource in rd
            .resources
            .values()
            .filter(|r| r.node_id.is_none() || r.port.is_none())
        {
            plan.op(Op::PutResource {
                resource: rd.name.clone(),
                placed: resource.clone(),
            });
        }
    }
    complete(cluster, &mut plan)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, apply, tutorial_cluster};
    use ferrite_types::LayerKind;

    fn replicated(cluster: &mut Cluster, name: &str, nodes: &[&str]) {
        for node in nodes {
            add_resource(cluster, name, node, "pool_ssd");
        }
        let rd = cluster
            .resource_definitions
            .get_mut(&name.parse::<ResourceName>().unwrap())
            .unwrap();
        rd.layer_stack = vec![LayerKind::Mirror, LayerKind::Storage];
    }

    #[test]
    fn secrets_node_ids_ports_and_minors_are_allocated_and_never_shared() {
        let mut cluster = tutorial_cluster();
        replicated(&mut cluster, "res1", &["node1", "node2"]);
        replicated(&mut cluster, "res2", &["node1", "node3"]);
        let plan = backfill(&cluster).unwrap();
        apply(&mut cluster, plan);
        let rd1 = &cluster.resource_definitions[&"res1".parse().unwrap()];
        let rd2 = &cluster.resource_definitions[&"res2".parse().unwrap()];
        let secret = rd1.secret.clone().unwrap();
        assert_eq!(secret.len(), SECRET_LENGTH);
        assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(rd1.secret, rd2.secret);
        let ids: BTreeSet<u8> = rd1.resources.values().map(|r| r.node_id.unwrap()).collect();
        assert_eq!(ids, BTreeSet::from([0, 1]));
        // node1 holds both: two ports; node2 and node3 start from the bottom of the range.
        let node1: NodeName = "node1".parse().unwrap();
        let ports_on_node1: BTreeSet<u16> = [rd1, rd2]
            .iter()
            .map(|rd| rd.resources[&node1].port.unwrap())
            .collect();
        assert_eq!(ports_on_node1, BTreeSet::from([7000, 7001]));
        let minors: BTreeSet<u32> = [rd1, rd2]
            .iter()
            .flat_map(|rd| rd.volume_definitions.values().map(|vd| vd.minor.unwrap()))
            .collect();
        assert_eq!(minors, BTreeSet::from([1000, 1001]));
        // Nothing more to do the second time.
        assert!(backfill(&cluster).unwrap().ops.is_empty());
    }

    #[test]
    fn a_plan_of_unreplicated_objects_is_left_as_it_is() {
        let mut cluster = tutorial_cluster();
        replicated(&mut cluster, "res1", &["node1"]);
        // One minor and one port in all, both taken: any allocation would now fail.
        cluster
            .props
            .insert(PROP_MINOR_RANGE.to_string(), "2000-2000".to_string());
        cluster
            .props
            .insert(PROP_TCP_PORT_RANGE.to_string(), "9000-9000".to_string());
        let plan = backfill(&cluster).unwrap();
        apply(&mut cluster, plan);

        // A STORAGE-only definition with its volume and a resource, as a spawn plans them.
        let mut scratch = cluster.clone();
        add_resource(&mut scratch, "plain", "node1", "pool_ssd");
        let plain = scratch.resource_definitions[&"plain".parse().unwrap()].clone();
        let mut plan = Plan::new();
        plan.op(Op::PutResourceDefinition(plain.clone()));
        for vd in plain.volume_definitions.values() {
            plan.op(Op::PutVolumeDefinition {
                resource: plain.name.clone(),
                volume_definition: vd.clone(),
            });
        }
        for resource in plain.resources.values() {
            plan.op(Op::PutResource {
                resource: plain.name.clone(),
                placed: resource.clone(),
            });
        }
        let before = format!("{:?}", plan.ops);
        complete(&cluster, &mut plan).unwrap();
        assert_eq!(format!("{:?}", plan.ops), before, "nothing allocated");

        // The same plan made replicated needs a minor and a port, and there are none.
        let mut plan = Plan::new();
        let mut mirrored = plain.clone();
        mirrored.layer_stack = vec![LayerKind::Mirror, LayerKind::Storage];
        plan.op(Op::PutResourceDefinition(mirrored));
        for vd in plain.volume_definitions.values() {
            plan.op(Op::PutVolumeDefinition {
                resource: plain.name.clone(),
                volume_definition: vd.clone(),
            });
        }
        let err = complete(&cluster, &mut plan).unwrap_err();
        assert_eq!(
            err.0[0].ret_code().code(),
            code::FAIL_POOL_EXHAUSTED_MINOR_NR
        );
    }

    #[test]
    fn a_taken_minor_is_refused_and_ranges_come_from_properties() {
        let mut cluster = tutorial_cluster();
        replicated(&mut cluster, "res1", &["node1"]);
        cluster
            .props
            .insert(PROP_MINOR_RANGE.to_string(), "2000-2001".to_string());
        cluster
            .props
            .insert(PROP_TCP_PORT_RANGE.to_string(), "9000-9000".to_string());
        let plan = backfill(&cluster).unwrap();
        apply(&mut cluster, plan);
        let rd1 = &cluster.resource_definitions[&"res1".parse().unwrap()];
        let vd = rd1.volume_definitions.values().next().unwrap().clone();
        assert_eq!(vd.minor, Some(2000));
        assert_eq!(rd1.resources.values().next().unwrap().port, Some(9000));

        let mut clash = vd.clone();
        clash.number = 1u16.into();
        clash.uuid = "another".into();
        let mut plan = Plan::new();
        plan.op(Op::PutVolumeDefinition {
            resource: "res1".parse().unwrap(),
            volume_definition: clash,
        });
        let err = complete(&cluster, &mut plan).unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_INVLD_MINOR_NR);

        // The only port on node1 is taken: a second resource there is refused.
        replicated(&mut cluster, "res2", &["node1"]);
        let err = backfill(&cluster).unwrap_err();
        assert_eq!(
            err.0[0].ret_code().code(),
            code::FAIL_POOL_EXHAUSTED_TCP_PORT
        );
    }
}
