//! Holding a resource's application writes on this member for a snapshot's cut: what
//! `drbdsetup suspend-io` / `resume-io` are to DRBD.
//!
//! A snapshot of a replicated resource is one write boundary on every replica. The controller
//! has every member's satellite suspend the resource's I/O, and only once all of them hold it
//! has the diskful members take their snapshots, then lets I/O go on. On a member, holding
//! means taking every volume's write gate exclusively ([`VolumeEngine::gate`]): new frontend
//! writes wait, and the hold is granted only once the writes in flight completed — with
//! protocol C, completed on every connected disk. So once every member holds, no write is in
//! flight anywhere and none can start: every disk has the same data. Writes received from peers
//! are never held (holding them would stall the Primary's drain); the Primary holds its own.
//! Before the cut, [`Suspension::flush`] puts what this member wrote on stable storage, so a
//! snapshot of the backing volume below the page cache sees it.
//!
//! A hold belongs to the control connection that asked for it: it ends with `resume-io`, when
//! the connection closes (the satellite died or restarted), or at [`SUSPEND_IO_LEASE`], so an
//! application never waits on a controller or satellite that went away. A hold that ended is
//! never silently taken again: [`Suspension::flush`] then fails, and the satellite does not
//! take (or keep) a cut that writes may have crossed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedRwLockWriteGuard;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::volume::VolumeEngine;

/// The longest a member holds a resource's writes for one cut. Longer than the satellite's own
/// lease, so the satellite (which ends the hold itself) is the one that decides.
pub const SUSPEND_IO_LEASE: Duration = Duration::from_secs(90);

/// How long a hold waits for the writes in flight to complete before it gives up (a write to a
/// peer that stopped answering completes at the peer's ping timeout).
pub const SUSPEND_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

type Guards = Arc<Mutex<Option<Vec<OwnedRwLockWriteGuard<()>>>>>;

/// A hold of one resource's writes on this member.
pub struct Suspension {
    resource: String,
    /// Identifies this hold in the daemon's life: a client that finds another epoch knows its
    /// hold ended in between.
    epoch: u64,
    volumes: Vec<Arc<VolumeEngine>>,
    guards: Guards,
    lease: JoinHandle<()>,
}

impl Suspension {
    /// Waits for the writes in flight to complete, holds new ones, and flushes the volumes.
    pub async fn hold(
        resource: &str,
        epoch: u64,
        volumes: Vec<Arc<VolumeEngine>>,
    ) -> Result<Suspension, String> {
        let gates: Vec<_> = volumes.iter().map(|v| v.gate()).collect();
        let drained = tokio::time::timeout(SUSPEND_DRAIN_TIMEOUT, async move {
            let mut guards = Vec::with_capacity(gates.len());
            for gate in gates {
                guards.push(gate.await);
            }
            guards
        })
        .await
        .map_err(|_| {
            format!(
                "the writes in flight to '{resource}' did not complete within {} s",
                SUSPEND_DRAIN_TIMEOUT.as_secs()
            )
        })?;
        let guards: Guards = Arc::new(Mutex::new(Some(drained)));
        let lease = {
            let guards = guards.clone();
            let resource = resource.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(SUSPEND_IO_LEASE).await;
                if take(&guards).is_some() {
                    warn!(
                        %resource, epoch,
                        lease_s = SUSPEND_IO_LEASE.as_secs(),
                        "I/O held for a snapshot's cut for the whole lease; resumed"
                    );
                }
            })
        };
        let suspension = Suspension {
            resource: resource.to_string(),
            epoch,
            volumes,
            guards,
            lease,
        };
        suspension.flush().await?;
        info!(resource, epoch, "I/O suspended for a snapshot's cut");
        Ok(suspension)
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether writes are still held (the lease has not ended the hold).
    pub fn is_held(&self) -> bool {
        self.guards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Puts everything this member wrote to the resource on stable storage, while the hold
    /// still stands; an error when it no longer does.
    pub async fn flush(&self) -> Result<(), String> {
        for volume in &self.volumes {
            if let Some(backing) = volume.backing() {
                backing.sync().await.map_err(|e| {
                    format!(
                        "cannot flush volume {} of '{}': {e}",
                        volume.number, self.resource
                    )
                })?;
            }
        }
        if !self.is_held() {
            return Err(format!(
                "the hold of '{}' for a snapshot's cut ended at its lease ({} s); writes may \
                 have crossed the cut",
                self.resource,
                SUSPEND_IO_LEASE.as_secs()
            ));
        }
        Ok(())
    }
}

impl Drop for Suspension {
    fn drop(&mut self) {
        self.lease.abort();
        if take(&self.guards).is_some() {
            info!(resource = %self.resource, epoch = self.epoch, "I/O resumed after a snapshot's cut");
        }
    }
}

fn take(guards: &Guards) -> Option<Vec<OwnedRwLockWriteGuard<()>>> {
    guards.lock().unwrap_or_else(|e| e.into_inner()).take()
}
