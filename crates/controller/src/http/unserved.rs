//! LINSTOR v1 calls Ferrite does not serve (schedules, remotes and backups, external files,
//! encryption, authentication, SOS reports, DRBD proxy, events, ...): they answer 501 Not
//! Implemented with an `ApiCallRc` error, never 404. golinstor reads a 404 as "no such object"
//! (`ErrNotFound`), so a client asking for, say, the schedules of a resource would conclude
//! there are none and act on it; a 501 is an error it reports instead.
//!
//! The table holds every path and method of LINSTOR's REST API v1 document (1.28) except the
//! snapshot and clone calls, which have their own routes. The router serves what Ferrite
//! implements before this table is consulted: only a request on a path no route takes falls
//! through to it. A path Ferrite serves with other methods (`PATCH /v1/error-reports`) answers
//! 405, not 501: the path exists, and 5xx stays for the controller's own faults on the paths its
//! OpenAPI document lists. These answers are not in that document, which lists what the
//! controller serves.

/// LINSTOR's v1 paths (`{name}` is one path segment) and their methods, comma-separated.
const LINSTOR_CALLS: &[(&str, &str)] = &[
    ("/v1/storage-pool-definitions", "GET,POST"),
    (
        "/v1/storage-pool-definitions/{storagepool}",
        "GET,PUT,DELETE",
    ),
    ("/v1/storage-pool-definitions/properties/info", "GET"),
    ("/v1/nodes", "GET,POST"),
    ("/v1/nodes/exec/drbd-reactorctl/status", "POST"),
    ("/v1/nodes/exec/drbd-reactorctl/evict", "POST"),
    ("/v1/nodes/exec/drbd-reactorctl/disable", "POST"),
    ("/v1/nodes/exec/drbd-reactorctl/enable", "POST"),
    ("/v1/nodes/exec/drbd-reactorctl/restart", "POST"),
    ("/v1/stats/nodes", "GET"),
    ("/v1/nodes/{node}", "PUT,DELETE"),
    ("/v1/nodes/properties/info", "GET"),
    ("/v1/nodes/{node}/lost", "DELETE"),
    ("/v1/nodes/{node}/reconnect", "PUT"),
    ("/v1/nodes/{node}/net-interfaces", "GET,POST"),
    (
        "/v1/nodes/{node}/net-interfaces/{netinterface}",
        "PUT,DELETE",
    ),
    ("/v1/nodes/{node}/storage-pools", "GET,POST"),
    ("/v1/nodes/{node}/storage-pools/{storagepool}", "PUT,DELETE"),
    ("/v1/nodes/{node}/storage-pools/properties/info", "GET"),
    ("/v1/nodes/{node}/config", "GET,PUT"),
    ("/v1/nodes/ebs", "POST"),
    ("/v1/node-connections", "GET"),
    ("/v1/node-connections/{node_a}/{node_b}", "PUT"),
    ("/v1/resource-definitions", "GET,POST"),
    ("/v1/stats/resource-definitions", "GET"),
    ("/v1/resource-definitions/{resource}", "PUT,DELETE"),
    ("/v1/resource-definitions/{resource}/sync-status", "GET"),
    (
        "/v1/resource-definitions/{resource}/files/{extFileName}",
        "POST,DELETE",
    ),
    ("/v1/resource-definitions/properties/info", "GET"),
    (
        "/v1/resource-definitions/{resource}/volume-definitions",
        "GET,POST",
    ),
    (
        "/v1/resource-definitions/{resource}/volume-definitions/{volume_number}",
        "PUT,DELETE",
    ),
    (
        "/v1/resource-definitions/{resource}/volume-definitions/properties/info",
        "GET",
    ),
    (
        "/v1/resource-definitions/{resource}/volume-definitions/{volume_number}/encryption-passphrase",
        "PUT",
    ),
    ("/v1/resource-definitions/{resource}/resources", "GET,POST"),
    (
        "/v1/resource-definitions/{resource}/resources/{node}",
        "POST,PUT,DELETE",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/make-available",
        "POST",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/properties/info",
        "GET",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/volumes",
        "GET",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/volumes/{volume_number}",
        "PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/volumes/properties/info",
        "GET",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk",
        "PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskless",
        "PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskless/{disklesspool}",
        "PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskful",
        "PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/toggle-disk/diskful/{storagepool}",
        "PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/migrate-disk/{fromnode}",
        "PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resources/{node}/migrate-disk/{fromnode}/{storagepool}",
        "PUT",
    ),
    ("/v1/resource-definitions/{resource}/autoplace", "POST"),
    (
        "/v1/resource-definitions/{resource}/resource-connections",
        "GET",
    ),
    (
        "/v1/resource-definitions/{resource}/resource-connections/{node_a}/{node_b}",
        "GET,PUT",
    ),
    (
        "/v1/resource-definitions/{resource}/resource-connections/properties/info",
        "GET",
    ),
    ("/v1/resource-groups", "GET,POST"),
    ("/v1/stats/resource-groups", "GET"),
    ("/v1/resource-groups/{resource_group}", "PUT,DELETE"),
    ("/v1/resource-groups/properties/info", "GET"),
    ("/v1/resource-groups/{resource_group}/spawn", "POST"),
    (
        "/v1/resource-groups/{resource_group}/volume-groups",
        "GET,POST",
    ),
    (
        "/v1/resource-groups/{resource_group}/volume-groups/{volume_number}",
        "PUT,DELETE",
    ),
    (
        "/v1/resource-groups/{resource_group}/volume-groups/properties/info",
        "GET",
    ),
    (
        "/v1/resource-groups/{resource_group}/query-max-volume-size",
        "GET",
    ),
    (
        "/v1/resource-groups/{resource_group}/query-size-info",
        "POST",
    ),
    ("/v1/controller/properties", "GET,POST"),
    ("/v1/controller/properties/{key}", "DELETE"),
    ("/v1/controller/properties/info", "GET"),
    ("/v1/controller/properties/info/all", "GET"),
    ("/v1/controller/config", "GET,PUT"),
    ("/v1/controller/backup/db", "POST"),
    ("/v1/controller/database/export", "POST"),
    ("/v1/controller/version", "GET"),
    ("/v1/controller/auth/initialize-token-auth", "POST"),
    ("/v1/controller/auth/token", "GET,POST"),
    ("/v1/controller/auth/token/{authtokenid}", "PUT,DELETE"),
    ("/v1/resource-definitions/{resource}/drbd-proxy", "PUT"),
    (
        "/v1/resource-definitions/{resource}/drbd-proxy/properties/info",
        "GET",
    ),
    (
        "/v1/resource-definitions/{resource}/drbd-proxy/enable/{node_a}/{node_b}",
        "POST",
    ),
    (
        "/v1/resource-definitions/{resource}/drbd-proxy/disable/{node_a}/{node_b}",
        "POST",
    ),
    ("/v1/encryption/passphrase", "GET,POST,PUT,PATCH"),
    ("/v1/error-reports", "GET,PATCH"),
    ("/v1/stats/error-reports", "GET"),
    ("/v1/error-reports/{reportid}", "GET,DELETE"),
    ("/v1/key-value-store", "GET"),
    ("/v1/key-value-store/{instance}", "GET,PUT,DELETE"),
    ("/v1/query-max-volume-size", "OPTIONS"),
    ("/v1/view/resources", "GET"),
    ("/v1/view/storage-pools", "GET"),
    ("/v1/view/schedules-by-resource", "GET"),
    ("/v1/view/schedules-by-resource/{rscName}", "GET"),
    ("/v1/view/backup/queue", "GET"),
    ("/v1/stats/resources", "GET"),
    ("/v1/stats/storage-pools", "GET"),
    ("/v1/sos-report", "GET"),
    ("/v1/sos-report/download", "GET"),
    ("/v1/remotes/{remote_name}/backups", "GET,DELETE,POST"),
    ("/v1/remotes/{remote_name}/backups/restore", "POST"),
    ("/v1/remotes/{remote_name}/backups/abort", "POST"),
    ("/v1/remotes/{remote_name}/backups/ship", "POST"),
    ("/v1/remotes/{remote_name}/backups/info", "POST"),
    (
        "/v1/remotes/{remote_name}/backups/schedule/{schedule_name}/enable",
        "PUT",
    ),
    (
        "/v1/remotes/{remote_name}/backups/schedule/{schedule_name}/disable",
        "PUT",
    ),
    (
        "/v1/remotes/{remote_name}/backups/schedule/{schedule_name}/delete",
        "DELETE",
    ),
    ("/v1/events/drbd/promotion", "GET"),
    ("/v1/events/nodes", "GET"),
    ("/v1/remotes", "GET,DELETE"),
    ("/v1/remotes/s3/{remoteName}", "PUT"),
    ("/v1/remotes/s3", "GET,POST"),
    ("/v1/remotes/linstor", "GET,POST"),
    ("/v1/remotes/linstor/{remoteName}", "PUT"),
    ("/v1/remotes/ebs", "GET,POST"),
    ("/v1/remotes/ebs/{remoteName}", "PUT"),
    ("/v1/schedules", "GET,POST"),
    ("/v1/schedules/{scheduleName}", "PUT,DELETE"),
    ("/v1/files", "GET"),
    ("/v1/files/{extFileName}", "GET,PUT,DELETE"),
    ("/v1/files/{extFileName}/check/{node}", "GET"),
    ("/v1/files/{extFileName}/status/{node}", "GET"),
    ("/v1/queries/resource-groups/query-all-size-info", "POST"),
];

/// The LINSTOR path template `path` falls under with `method`, if LINSTOR serves it.
pub fn linstor_call(method: &str, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    LINSTOR_CALLS
        .iter()
        .filter(|(_, methods)| methods.split(',').any(|m| m.eq_ignore_ascii_case(method)))
        .map(|(template, _)| *template)
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, segment)| {
                    if part.starts_with('{') {
                        !segment.is_empty()
                    } else {
                        part == segment
                    }
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linstor_calls_are_recognised_with_their_methods() {
        assert_eq!(linstor_call("GET", "/v1/schedules"), Some("/v1/schedules"));
        assert_eq!(
            linstor_call("PUT", "/v1/remotes/s3/my_remote"),
            Some("/v1/remotes/s3/{remoteName}")
        );
        assert_eq!(
            linstor_call("patch", "/v1/encryption/passphrase"),
            Some("/v1/encryption/passphrase")
        );
        assert_eq!(
            linstor_call("GET", "/v1/view/schedules-by-resource/res1"),
            Some("/v1/view/schedules-by-resource/{rscName}")
        );
        // Not LINSTOR's: a typo, a method LINSTOR does not take, an empty segment.
        assert_eq!(linstor_call("GET", "/v1/schedule"), None);
        assert_eq!(linstor_call("DELETE", "/v1/files"), None);
        assert_eq!(linstor_call("PUT", "/v1/remotes/s3/"), None);
    }

    #[test]
    fn snapshot_and_clone_calls_are_not_in_the_table() {
        for (template, _) in LINSTOR_CALLS {
            assert!(
                !template.contains("snapshot") && !template.contains("clone"),
                "{template}"
            );
        }
    }
}
