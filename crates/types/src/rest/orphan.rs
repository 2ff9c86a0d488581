//! Ferrite's own shapes for what LINSTOR has no words for: orphaned backing volumes, and the
//! database backup request LINSTOR's clients send.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ProviderKind;

/// A backing volume a node keeps although nothing wants it and nobody asked to delete it:
/// left by a resource the controller forgot (a restored store, a node declared lost and
/// registered again) or by an earlier definition of the same name. It is never deleted but by
/// an explicit `POST /v1/nodes/{node}/orphans/delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Orphan {
    pub node_name: String,
    pub resource_name: String,
    pub volume_number: i32,
    /// The identity (volume definition UUID) it was created for; `null` for volumes made
    /// before identities.
    pub identity: Option<String>,
    pub provider_kind: ProviderKind,
    /// Where it is: the pool's directory, volume group or dataset.
    pub pool_name: String,
    /// The storage pool it was created in.
    pub storage_pool_name: String,
    /// Its name on the node, e.g. `web_00000`.
    pub backing_name: String,
    /// Why it is an orphan.
    pub reason: String,
}

/// Names one orphan exactly, identity included, so a command meant for one volume never
/// touches another of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrphanRef {
    pub resource_name: String,
    pub volume_number: i32,
    /// As listed; `null` (or absent) for volumes made before identities.
    #[serde(default)]
    pub identity: Option<String>,
    /// As listed: the pool's directory, volume group or dataset.
    pub pool_name: String,
}

/// `POST /v1/controller/backup/db`: where to write a consistent copy of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseBackupRequest {
    /// An absolute path on the controller's host that does not exist yet.
    pub backup_name: String,
}
