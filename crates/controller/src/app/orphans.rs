//! Orphans and missing volumes: what the nodes keep that nothing wants, what they miss, and the
//! operator's explicit commands about both.
//!
//! Satellites never delete a backing volume that no deletion names, and never create again a
//! volume they made that has disappeared. Both cases are reported and wait for an operator:
//! [`delete_command`] removes an orphan, [`recreate_command`] accepts the loss of a missing
//! volume and lets its node create it anew, empty. Each names the volume exactly (identity
//! included) and goes to the node's satellite, which checks again before it acts.

use ferrite_proto::NodeCommand;
use ferrite_types::api_call_rc::code;
use ferrite_types::{NodeName, rest};

use super::placement::Runtime;
use super::{Context, Failure, Object, Operation, nodes, resource_definitions, resources};
use crate::model::Cluster;

const DELETE: Context = Context::new(Operation::Delete, Object::Volume);
const RECREATE: Context = Context::new(Operation::Create, Object::Volume);

/// The orphans of one node (or of every node), as last reported.
pub fn list(cluster: &Cluster, runtime: &Runtime, node: Option<&NodeName>) -> Vec<rest::Orphan> {
    let mut orphans: Vec<rest::Orphan> = cluster
        .nodes
        .keys()
        .filter(|name| node.is_none_or(|n| n == *name))
        .filter_map(|name| runtime.get(name).map(|r| (name, r)))
        .flat_map(|(name, reported)| {
            reported.orphans.iter().map(move |o| rest::Orphan {
                node_name: name.to_string(),
                resource_name: o.resource.clone(),
                volume_number: i32::from(o.volume_number),
                identity: o.identity.clone(),
                provider_kind: o.provider_kind,
                pool_name: o.pool_name.clone(),
                storage_pool_name: o.storage_pool.clone(),
                backing_name: o.backing_name.clone(),
                reason: o.reason.clone(),
            })
        })
        .collect();
    orphans.sort_by(|a, b| {
        (&a.node_name, &a.pool_name, &a.backing_name).cmp(&(
            &b.node_name,
            &b.pool_name,
            &b.backing_name,
        ))
    });
    orphans
}

/// Checks a request to delete an orphan and turns it into the node's command.
pub fn delete_command(
    cluster: &Cluster,
    runtime: &Runtime,
    node: &str,
    orphan: &rest::OrphanRef,
) -> Result<(NodeName, NodeCommand), Failure> {
    let ctx = &DELETE;
    let node = nodes::find(ctx, cluster, node)?.name.clone();
    let number = u16::try_from(orphan.volume_number).map_err(|_| {
        ctx.invalid(
            code::FAIL_INVLD_VLM_NR,
            format!("Invalid volume number {}.", orphan.volume_number),
            "Give the volume number as 'ferrite node orphans list' shows it.",
        )
    })?;
    let listed = runtime.get(&node).is_some_and(|r| {
        r.orphans.iter().any(|o| {
            o.resource.eq_ignore_ascii_case(&orphan.resource_name)
                && o.volume_number == number
                && o.identity == orphan.identity
                && o.pool_name == orphan.pool_name
        })
    });
    if !listed {
        return Err(ctx
            .error(
                code::FAIL_NOT_FOUND_VLM,
                format!(
                    "Node '{node}' reports no orphan {}/{} in '{}' with {}.",
                    orphan.resource_name,
                    orphan.volume_number,
                    orphan.pool_name,
                    orphan
                        .identity
                        .as_deref()
                        .map(|i| format!("identity {i}"))
                        .unwrap_or_else(|| "no identity".to_string())
                ),
            )
            .correction(format!(
                "List the orphans with 'ferrite node orphans list {node}' and name one exactly."
            ))
            .into());
    }
    Ok((
        node,
        NodeCommand::DeleteOrphan {
            resource: orphan.resource_name.clone(),
            volume_number: number,
            identity: orphan.identity.clone(),
            pool_name: orphan.pool_name.clone(),
        },
    ))
}

/// Checks a request to create a missing volume anew and turns it into the node's command.
pub fn recreate_command(
    cluster: &Cluster,
    resource: &str,
    node: &str,
    number: i64,
) -> Result<(NodeName, NodeCommand), Failure> {
    let ctx = &RECREATE;
    let rd = resource_definitions::find(ctx, cluster, resource)?;
    let placed = resources::find(ctx, cluster, rd, node)?;
    let vd = resource_definitions::find_volume(ctx, rd, number)?;
    if !placed.holds_data() || vd.is_deleting() {
        return Err(ctx
            .error(
                code::FAIL_INVLD_REQUEST,
                format!(
                    "Volume {} of '{}' on '{}' has no disk to create.",
                    vd.number, rd.name, placed.node
                ),
            )
            .correction("Only a diskful volume that is not being deleted can be missing.")
            .into());
    }
    Ok((
        placed.node.clone(),
        NodeCommand::RecreateMissing {
            resource: rd.name.to_string(),
            volume_number: vd.number.get(),
            identity: vd.uuid.clone(),
        },
    ))
}

/// The answer to a node command: its message, or the node's refusal.
pub fn command_answer(
    ctx: Context,
    success_code: u64,
    node: &NodeName,
    result: Result<String, String>,
) -> Result<Vec<ferrite_types::ApiCallRc>, Failure> {
    match result {
        Ok(done) => Ok(vec![
            ctx.success(success_code, done)
                .obj_ref("Node", node.as_str()),
        ]),
        Err(why) => Err(ctx
            .error(
                code::FAIL_NOT_CONNECTED,
                format!("Node '{node}' did not carry out the command."),
            )
            .cause(why)
            .correction("Nothing was changed on the node; fix the cause and ask again.")
            .obj_ref("Node", node.as_str())
            .into()),
    }
}

/// The contexts of the two commands, for their answers.
pub const DELETE_CONTEXT: Context = DELETE;
pub const RECREATE_CONTEXT: Context = RECREATE;
