//! Whether a resource definition's replicas are in sync (`GET …/sync-status`, what
//! `resource-definition wait-sync` polls): every diskful replica's engine reports every volume
//! UpToDate. A definition without a replication layer has independent replicas and nothing to
//! synchronise, so it is always in sync; a replica whose engine has not reported (its node
//! offline, say) is not.

use ferrite_types::rest;

use super::placement::Runtime;
use super::{Context, Failure, Object, Operation, resource_definitions};
use crate::model::Cluster;

const QUERY: Context = Context::new(Operation::Modify, Object::ResourceDefinition);

/// The disk state of an in-sync replica.
const UP_TO_DATE: &str = "UpToDate";

pub fn sync_status(
    cluster: &Cluster,
    runtime: &Runtime,
    resource: &str,
) -> Result<rest::SyncStatus, Failure> {
    let rd = resource_definitions::find(&QUERY, cluster, resource)?;
    if !rd.is_replicated() {
        return Ok(rest::SyncStatus {
            synced_on_all: true,
        });
    }
    let synced_on_all = rd.resources.values().filter(|r| r.holds_data()).all(|r| {
        let Some(report) = runtime
            .get(&r.node)
            .and_then(|n| n.replication.get(rd.name.key()))
        else {
            return false;
        };
        rd.volume_definitions.values().all(|vd| {
            report
                .volumes
                .iter()
                .any(|v| v.volume_number == vd.number.get() && v.disk_state == UP_TO_DATE)
        })
    });
    Ok(rest::SyncStatus { synced_on_all })
}
