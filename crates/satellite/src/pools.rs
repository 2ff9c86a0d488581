//! The identity of every storage pool the satellite keeps volumes in.
//!
//! A pool is a place (a directory, a volume group, a dataset), and places can change what they
//! hold: a directory whose file system is not mounted yet at boot is an empty directory on the
//! root file system, and another disk can be mounted, or a volume group of the same name
//! created, where the pool was. Creating a volume there hides the real one; deleting there
//! deletes the wrong thing. So the satellite records each pool's identity (a FILE directory's
//! marker file, a volume group's UUID, a dataset's GUID — see `Provider::pool_identity`) when it
//! first uses it, in `pools.json`, and a pool whose identity no longer matches is unusable:
//! nothing is created, grown or deleted in it, and its volumes are reported as failed with the
//! reason, until the original storage is back.
//!
//! The identity matters only while the satellite has volumes in the pool: a pool without any
//! (new, or emptied) takes the identity it has now.

use std::collections::BTreeMap;

use ferrite_storage::Providers;
use ferrite_types::ProviderKind;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::persist::{POOLS_FILE, PersistError, StateDir};

/// What was recorded of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub provider_kind: ProviderKind,
    /// The pool's backing location, normalized (see `normalized_pool_name`).
    pub pool_name: String,
    pub identity: String,
}

/// `pools.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRegistry {
    #[serde(default)]
    pub pools: Vec<PoolRecord>,
}

/// Why a pool is not the storage its volumes were created in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolIdentityError {
    #[error(
        "{kind} pool '{pool}' is not the storage this node's volumes were created in: it had \
         identity '{expected}', it now has {found}; is its file system not mounted, or another \
         disk in its place? Nothing is created or deleted in it until the original storage is \
         back"
    )]
    Mismatch {
        kind: ProviderKind,
        pool: String,
        expected: String,
        found: String,
    },
    #[error("cannot read the identity of {kind} pool '{pool}': {reason}")]
    Unreadable {
        kind: ProviderKind,
        pool: String,
        reason: String,
    },
    #[error("cannot record the identity of {kind} pool '{pool}': {reason}")]
    Unrecorded {
        kind: ProviderKind,
        pool: String,
        reason: String,
    },
}

impl PoolRegistry {
    pub fn load(state_dir: &StateDir) -> Result<PoolRegistry, PersistError> {
        Ok(state_dir.read(POOLS_FILE)?.unwrap_or_default())
    }

    fn record(&self, kind: ProviderKind, pool_name: &str) -> Option<&PoolRecord> {
        self.pools
            .iter()
            .find(|r| r.provider_kind == kind && r.pool_name == pool_name)
    }

    /// Checks that the pool at `pool_name` is still the storage recorded for it. A pool in
    /// which the satellite holds no volume (`holds_volumes` false) takes its current identity,
    /// marked with `mark` if it has none; so does a pool seen for the first time.
    pub fn verify(
        &mut self,
        state_dir: &StateDir,
        providers: &Providers,
        kind: ProviderKind,
        pool_name: &str,
        mark: &str,
        holds_volumes: bool,
    ) -> Result<(), PoolIdentityError> {
        if kind == ProviderKind::Diskless {
            return Ok(());
        }
        let provider = providers.get(kind);
        let current =
            provider
                .pool_identity(pool_name)
                .map_err(|e| PoolIdentityError::Unreadable {
                    kind,
                    pool: pool_name.to_string(),
                    reason: e.to_string(),
                })?;
        let recorded = self.record(kind, pool_name).map(|r| r.identity.clone());
        match (&recorded, &current) {
            (Some(expected), Some(found)) if expected == found => return Ok(()),
            (Some(expected), found) if holds_volumes => {
                let found = match found {
                    Some(found) => format!("identity '{found}'"),
                    None => "no identity (no marker)".to_string(),
                };
                warn!(%kind, pool = pool_name, expected, %found, "storage pool identity mismatch");
                return Err(PoolIdentityError::Mismatch {
                    kind,
                    pool: pool_name.to_string(),
                    expected: expected.clone(),
                    found,
                });
            }
            _ => {}
        }
        let unrecorded = |reason: String| PoolIdentityError::Unrecorded {
            kind,
            pool: pool_name.to_string(),
            reason,
        };
        let identity = match current {
            Some(identity) => identity,
            None => provider
                .mark_pool(pool_name, mark)
                .map_err(|e| unrecorded(e.to_string()))?
                .ok_or_else(|| unrecorded("the pool has no identity to record".to_string()))?,
        };
        info!(%kind, pool = pool_name, %identity, "recorded storage pool identity");
        self.pools
            .retain(|r| !(r.provider_kind == kind && r.pool_name == pool_name));
        self.pools.push(PoolRecord {
            provider_kind: kind,
            pool_name: pool_name.to_string(),
            identity,
        });
        self.pools
            .sort_by(|a, b| (a.provider_kind, &a.pool_name).cmp(&(b.provider_kind, &b.pool_name)));
        state_dir
            .write(POOLS_FILE, self)
            .map_err(|e| unrecorded(e.to_string()))
    }

    /// The recorded identities, by kind and location.
    pub fn identities(&self) -> BTreeMap<(ProviderKind, String), String> {
        self.pools
            .iter()
            .map(|r| ((r.provider_kind, r.pool_name.clone()), r.identity.clone()))
            .collect()
    }
}
