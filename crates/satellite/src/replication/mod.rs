//! The replication layer of this node's resources: what the reconciler asks of a replication
//! engine, whichever it is: MIRROR's `ferrite-mirrord` (`mirror`) or the kernel's DRBD 9
//! through drbd-utils (`drbd`, also as a dry run on hosts without DRBD).
//!
//! The reconciler applies a replicated resource's stack bottom-up and tears it down top-down:
//!
//! ```text
//!   create / grow backing volumes (STORAGE) ──▶ engine.apply(member) ──▶ delete the backing
//!                                                  (or engine.down)          volumes it released
//! ```
//!
//! so the engine never runs on a backing volume that does not exist yet, and a backing volume
//! is deleted only once the engine no longer holds it. When the engine cannot release a volume
//! (it is in use, the engine does not answer), the deletion waits and the report says why.

pub mod drbd;
pub mod mirror;

use std::path::PathBuf;

use ferrite_proto::{ReplicationEngine, ReplicationReport, ReplicationSpec};

/// One member of a replicated resource, as the engine is to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member<'a> {
    pub resource: &'a str,
    pub node_name: &'a str,
    pub replication: &'a ReplicationSpec,
    pub volumes: Vec<MemberVolume>,
}

/// A volume of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberVolume {
    pub number: u16,
    pub minor: Option<u32>,
    /// The size applications see.
    pub usable_kib: u64,
    /// The backing device (usable size plus the engine's metadata); none on a diskless member.
    pub backing: Option<PathBuf>,
    /// The backing volume reads as zeros where nothing was written (thin, or a sparse file):
    /// when every member's volume is new, the engine may skip the initial sync.
    pub new_volume: bool,
    /// The backing volume holds data from a snapshot whose replication metadata is not this
    /// member's: [`ReplicationDriver::write_fresh_metadata`] replaces it before the engine first
    /// runs the volume.
    pub fresh_metadata: Option<FreshMetadata>,
}

pub use crate::ledger::FreshMetadata;

/// A replication engine on this node.
pub trait ReplicationDriver: Send {
    fn engine(&self) -> ReplicationEngine;

    /// The size of the backing volume for a volume of `usable_kib` with these options, of a
    /// member with the volumes `volumes` (the engine keeps its metadata at the end of the
    /// backing volume).
    fn backing_kib(
        &self,
        usable_kib: u64,
        replication: &ReplicationSpec,
        volumes: &[u16],
    ) -> Result<u64, String>;

    /// Called at the start of a convergence pass: reads the engine's state of every resource.
    fn begin_pass(&mut self);

    /// Brings the member up, or adjusts it to `member` when it runs.
    fn apply(&mut self, member: &Member) -> Result<(), String>;

    /// Writes new replication metadata on `volume` of `member` (a restored or rolled-back
    /// volume, see [`MemberVolume::fresh_metadata`]) over what the snapshot brought: UpToDate at
    /// `fresh.generation`, or just created without one. Called before [`ReplicationDriver::apply`]
    /// runs the volume for the first time, never while the engine runs it.
    fn write_fresh_metadata(
        &mut self,
        member: &Member,
        volume: &MemberVolume,
        fresh: FreshMetadata,
    ) -> Result<(), String>;

    /// Takes the resource down and forgets its configuration. Refused while it is in use.
    fn down(&mut self, resource: &str) -> Result<(), String>;

    /// Holds new application writes to the resource on this node until
    /// [`ReplicationDriver::resume_io`], once the writes in flight completed: a snapshot's cut
    /// (`drbdadm suspend-io`). Every member of the resource holds before any takes its snapshot,
    /// so no write crosses the cut. Engines that cannot hold I/O refuse, and the snapshot is not
    /// taken.
    fn suspend_io(&mut self, resource: &str) -> Result<(), String> {
        Err(format!(
            "the {} engine cannot suspend the I/O of '{resource}'",
            self.engine()
        ))
    }

    /// Confirms the hold of [`ReplicationDriver::suspend_io`] still stands and puts what this
    /// node wrote on stable storage: called right before a snapshot of the backing volumes, and
    /// again after it (a hold that ended in between means writes may have crossed the cut).
    fn confirm_suspended(&mut self, resource: &str) -> Result<(), String> {
        let _ = resource;
        Ok(())
    }

    /// Lets I/O held by [`ReplicationDriver::suspend_io`] go on.
    fn resume_io(&mut self, resource: &str) -> Result<(), String> {
        let _ = resource;
        Ok(())
    }

    /// The engine's view of the resource as of this pass, with `error` when the last apply or
    /// down failed.
    fn report(&self, resource: &str, error: Option<String>) -> ReplicationReport;
}

#[cfg(test)]
mod drbd_tests;
