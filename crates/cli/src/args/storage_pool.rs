//! `storage-pool` (`sp`): storage pools per provider.

use clap::{Args, Subcommand};

use super::{PastableOnly, PropertyArgs, TableOpts};

#[derive(Debug, Subcommand)]
pub enum StoragePoolCommand {
    /// Create a storage pool on a node.
    #[command(subcommand, visible_alias = "c")]
    Create(StoragePoolCreate),
    /// List storage pools.
    #[command(visible_alias = "l")]
    List(StoragePoolList),
    /// Delete a storage pool from a node.
    #[command(visible_alias = "d")]
    Delete(StoragePoolRef),
    /// Set a storage pool property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(StoragePoolSetProperty),
    /// Print a storage pool's properties.
    #[command(visible_alias = "lp")]
    ListProperties(StoragePoolListProperties),
}

#[derive(Debug, Subcommand)]
pub enum StoragePoolCreate {
    /// A pool of thick logical volumes in an LVM volume group.
    Lvm(PoolWithDriver),
    /// A pool of thin logical volumes in an LVM thin pool (VG/THINPOOL).
    Lvmthin(PoolWithDriver),
    /// A pool of ZFS volumes in a zpool.
    Zfs(PoolWithDriver),
    /// A pool of thin ZFS volumes in a zpool.
    Zfsthin(PoolWithDriver),
    /// A pool of preallocated files in a directory.
    File(PoolWithDriver),
    /// A pool of sparse files in a directory.
    Filethin(PoolWithDriver),
    /// A pool for diskless resources.
    Diskless(PoolWithoutDriver),
}

#[derive(Debug, Args)]
pub struct PoolOpts {
    /// Name of the space shared by pools on several nodes.
    #[arg(long)]
    pub shared_space: Option<String>,
    /// The pool is locked by something outside Ferrite.
    #[arg(long)]
    pub external_locking: bool,
}

#[derive(Debug, Args)]
pub struct PoolWithDriver {
    #[command(flatten)]
    pub opts: PoolOpts,
    /// Node to create the pool on.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
    /// The volume group, thin pool (VG/LV), zpool or directory to take space from.
    pub driver_pool_name: String,
}

#[derive(Debug, Args)]
pub struct PoolWithoutDriver {
    #[command(flatten)]
    pub opts: PoolOpts,
    /// Node to create the pool on.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct StoragePoolList {
    #[command(flatten)]
    pub table: TableOpts,
    /// Only these storage pools.
    #[arg(short = 's', long, num_args = 1..)]
    pub storage_pools: Vec<String>,
    /// Only pools on these nodes.
    #[arg(short = 'n', long, num_args = 1..)]
    pub nodes: Vec<String>,
    /// Only pools with these properties (KEY or KEY=VALUE).
    #[arg(long, num_args = 1..)]
    pub props: Vec<String>,
    /// Add a column per property (KEY or KEY=HEADER).
    #[arg(long, num_args = 1..)]
    pub show_props: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StoragePoolRef {
    /// Node of the storage pool.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct StoragePoolSetProperty {
    /// Node of the storage pool.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
    #[command(flatten)]
    pub property: PropertyArgs,
}

#[derive(Debug, Args)]
pub struct StoragePoolListProperties {
    #[command(flatten)]
    pub table: PastableOnly,
    /// Node of the storage pool.
    pub node_name: String,
    /// Name of the storage pool.
    pub name: String,
}
