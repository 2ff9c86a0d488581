//! What the controller does with each request: validate it against the object graph and turn
//! it into a [`Plan`] of [`Op`]s plus the answer, or refuse it with a [`Failure`] that says
//! what was wrong, why, and how to correct it.
//!
//! Functions here are pure: they read a [`Cluster`] (and what satellites reported) and never
//! touch the store, the network or the clock beyond taking timestamps, so every rule is unit
//! tested without HTTP. `crate::core` commits plans; `crate::http` maps them onto REST.

pub mod allocation;
pub mod capacity;
pub mod connections;
pub mod controller_props;
pub mod deletions;
pub mod engine;
pub mod error_reports;
pub mod evacuation;
pub mod key_value_stores;
pub mod nodes;
pub mod orphans;
pub mod physical_storage;
pub mod placement;
pub mod properties;
pub mod replica_count;
pub mod resource_definitions;
pub mod resource_groups;
pub mod resources;
pub mod size_info;
pub mod snapshots;
pub mod storage_pools;
pub mod sync_status;
pub mod tiebreaker;
pub mod views;

use ferrite_types::api_call_rc::{code, mask};
use ferrite_types::{ApiCallRc, NameError, RetCode};

use crate::model::{Cluster, Op};

/// Completes a plan before it is committed, on every path: chooses the replication engine of
/// definitions placed for the first time (`engine`), adds and removes quorum tiebreakers
/// (`tiebreaker`), then allocates node-ids, ports, minors and secrets (`allocation`).
pub fn finalize(
    cluster: &Cluster,
    runtime: &placement::Runtime,
    plan: &mut Plan,
) -> Result<(), Failure> {
    engine::complete(cluster, runtime, plan)?;
    tiebreaker::complete(cluster, runtime, plan);
    allocation::complete(cluster, plan)
}

/// An accepted request: what to change and what to answer once it is committed.
#[derive(Debug, Default)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub replies: Vec<ApiCallRc>,
    /// Nodes the answer should wait for even if no op touches them (e.g. a new node).
    pub wait_online: Vec<ferrite_types::NodeName>,
    /// What the plan marks for deletion: the answer says whether each deletion finished.
    pub deletions: Vec<deletions::Marked>,
    /// The answer does not wait for the satellites the change reaches, so an offline node adds
    /// no warning: LINSTOR's network-interface calls answer this way.
    pub no_wait: bool,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    pub fn op(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    pub fn reply(&mut self, rc: ApiCallRc) -> &mut Self {
        self.replies.push(rc);
        self
    }
}

/// A refused request: one or more entries, at least one an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure(pub Vec<ApiCallRc>);

impl From<ApiCallRc> for Failure {
    fn from(rc: ApiCallRc) -> Self {
        Failure(vec![rc])
    }
}

/// The object a request is about: its `ret_code` object mask and its `obj_refs` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Controller,
    Node,
    NetInterface,
    StoragePool,
    ResourceGroup,
    VolumeGroup,
    ResourceDefinition,
    VolumeDefinition,
    Resource,
    Volume,
    KeyValueStore,
    NodeConnection,
    ResourceConnection,
    Snapshot,
}

impl Object {
    pub fn mask(self) -> u64 {
        match self {
            Object::Controller => mask::CTRL_CONF,
            Object::Node => mask::NODE,
            Object::NetInterface => mask::NET_IF,
            Object::StoragePool => mask::STOR_POOL,
            Object::ResourceGroup => mask::RSC_GRP,
            Object::VolumeGroup => mask::VLM_GRP,
            Object::ResourceDefinition => mask::RSC_DFN,
            Object::VolumeDefinition => mask::VLM_DFN,
            Object::Resource => mask::RSC,
            Object::Volume => mask::VLM,
            Object::KeyValueStore => mask::KVS,
            Object::NodeConnection => mask::NODE_CONN,
            Object::ResourceConnection => mask::RSC_CONN,
            Object::Snapshot => mask::SNAPSHOT,
        }
    }
}

/// Create, modify or delete: the operation bits of a `ret_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Modify,
    Delete,
}

impl Operation {
    pub fn mask(self) -> u64 {
        match self {
            Operation::Create => mask::CRT,
            Operation::Modify => mask::MOD,
            Operation::Delete => mask::DEL,
        }
    }
}

/// Builds `ApiCallRc`s with the operation and object bits of one request.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub operation: Operation,
    pub object: Object,
}

impl Context {
    pub const fn new(operation: Operation, object: Object) -> Context {
        Context { operation, object }
    }

    fn code(&self, rc: RetCode) -> RetCode {
        rc.with_context(self.operation.mask(), self.object.mask())
    }

    pub fn success(&self, code_value: u64, message: impl Into<String>) -> ApiCallRc {
        ApiCallRc::new(self.code(RetCode::success(code_value)), message)
    }

    pub fn created(&self, message: impl Into<String>) -> ApiCallRc {
        self.success(code::CREATED, message)
    }

    pub fn modified(&self, message: impl Into<String>) -> ApiCallRc {
        self.success(code::MODIFIED, message)
    }

    pub fn deleted(&self, message: impl Into<String>) -> ApiCallRc {
        self.success(code::DELETED, message)
    }

    pub fn info(&self, code_value: u64, message: impl Into<String>) -> ApiCallRc {
        ApiCallRc::new(self.code(RetCode::info(code_value)), message)
    }

    pub fn warn(&self, code_value: u64, message: impl Into<String>) -> ApiCallRc {
        ApiCallRc::new(self.code(RetCode::warn(code_value)), message)
    }

    pub fn error(&self, code_value: u64, message: impl Into<String>) -> ApiCallRc {
        ApiCallRc::new(self.code(RetCode::error(code_value)), message)
    }

    /// A name that failed validation.
    pub fn invalid_name(&self, code_value: u64, err: &NameError) -> Failure {
        self.error(code_value, err.to_string())
            .cause(err.reason.clone())
            .correction(err.correction())
            .into()
    }

    /// An invalid value in the request.
    pub fn invalid(
        &self,
        code_value: u64,
        message: impl Into<String>,
        correction: impl Into<String>,
    ) -> Failure {
        self.error(code_value, message)
            .correction(correction)
            .into()
    }
}

/// Lower-cased object kinds for messages, LINSTOR's wording.
pub fn not_found(
    ctx: &Context,
    code_value: u64,
    what: &str,
    name: impl std::fmt::Display,
    correction: impl Into<String>,
) -> Failure {
    ctx.error(code_value, format!("{what} '{name}' not found."))
        .cause(format!(
            "The specified {} '{name}' could not be found in the database.",
            what.to_lowercase()
        ))
        .correction(correction)
        .into()
}

/// LINSTOR's answer to deleting an object that does not exist: nothing changes, and the
/// answer is a `WARN_NOT_FOUND` warning (HTTP 200), not an error, so that a deletion can be
/// repeated.
pub fn nothing_to_delete(ctx: &Context, message: String, cause: String) -> Plan {
    let mut plan = Plan::new();
    plan.reply(ctx.warn(code::WARN_NOT_FOUND, message).cause(cause));
    plan
}

/// Whether a refusal is a not-found error of the given code (the object, not its parent).
pub fn is_not_found(failure: &Failure, code_value: u64) -> bool {
    failure
        .0
        .first()
        .is_some_and(|rc| rc.is_error() && rc.ret_code().code() == code_value)
}

/// Parses a typed name from the request or refuses with the matching `FAIL_INVLD_*` code.
pub fn parse_name<T>(ctx: &Context, code_value: u64, value: &str) -> Result<T, Failure>
where
    T: std::str::FromStr<Err = NameError>,
{
    value
        .parse::<T>()
        .map_err(|err| ctx.invalid_name(code_value, &err))
}

#[cfg(test)]
pub(crate) mod testing;
