//! The ranges of the numbers the REST API takes, as LINSTOR and DRBD define them.
//!
//! Ferrite keeps some of these values only to answer them back (it does not run DRBD yet), but a
//! value outside its range is refused either way: a client that sends one has a bug, and a
//! stored impossible value would surface later, far from its cause.

use std::ops::RangeInclusive;

/// TCP ports: satellite ports and DRBD ports.
pub const TCP_PORT: RangeInclusive<i32> = 1..=65_535;

/// DRBD minor numbers: 20 bits (`/dev/drbd0` to `/dev/drbd1048575`).
pub const DRBD_MINOR_NUMBER: RangeInclusive<i32> = 0..=1_048_575;

/// DRBD node ids within one resource.
pub const DRBD_NODE_ID: RangeInclusive<i32> = 0..=31;

/// DRBD peer slots: how many peers a resource's metadata has room for.
pub const DRBD_PEER_SLOTS: RangeInclusive<i32> = 1..=31;

/// How many TCP ports one resource may take.
pub const TCP_PORT_COUNT: RangeInclusive<i32> = 1..=65_535;

/// Diskful replicas of one resource (DRBD 9's limit; MIRROR keeps it).
pub const PLACE_COUNT: RangeInclusive<i32> = 1..=32;

/// Diskful replicas to add to the existing ones.
pub const ADDITIONAL_PLACE_COUNT: RangeInclusive<i32> = 0..=32;

/// Replicas per distinct value of a node property (`x_replicas_on_different_map`).
pub const REPLICAS_PER_VALUE: RangeInclusive<i32> = 1..=32;

/// The longest description (of a resource group), in characters.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
