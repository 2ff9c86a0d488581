//! Ferrite's shared vocabulary.
//!
//! This crate owns the words every other crate speaks: typed object names that validate on
//! construction ([`names`]), sizes with LINSTOR's units ([`size`]), the enumerations of the
//! object model ([`kinds`]), the `ApiCallRc` envelope with its bit-masked return codes
//! ([`api_call_rc`]), the rules of property keys and values ([`property`]), the ranges of the
//! numbers the API takes ([`limits`]) and the JSON shapes of LINSTOR's REST API v1 ([`rest`]).
//!
//! It holds no behaviour beyond parsing and validation: no I/O, no placement, no storage.

pub mod api_call_rc;
pub mod kinds;
pub mod limits;
pub mod names;
pub mod property;
pub mod rest;
pub mod size;

pub use api_call_rc::{ApiCallRc, RetCode};
pub use kinds::{ConnectionStatus, EncryptionType, LayerKind, NodeType, ProviderKind};
pub use names::{
    NameError, NetInterfaceName, NodeName, ResourceGroupName, ResourceName, SnapshotName,
    StorPoolName, VolumeNumber,
};
pub use size::{SizeError, parse_size_kib};

/// The REST API version Ferrite reports; python-linstor and golinstor gate features on it.
pub const REST_API_VERSION: &str = "1.28.0";

/// The storage pool every node has for diskless resources, as in LINSTOR.
pub const DEFAULT_DISKLESS_POOL: &str = "DfltDisklessStorPool";

/// The resource group that exists from the start and that resource definitions belong to by default.
pub const DEFAULT_RESOURCE_GROUP: &str = "DfltRscGrp";

/// The property naming the backing pool of a storage pool (volume group, directory, zpool, ...).
pub const PROP_STOR_POOL_NAME: &str = "StorDriver/StorPoolName";

/// The resource property that pins a resource to a storage pool.
pub const PROP_RESOURCE_STOR_POOL: &str = "StorPoolName";
