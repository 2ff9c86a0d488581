//! DRBD 9 as LINSTOR drives it, without I/O policy: the resource file of one member
//! (`res_file`), the `DrbdOptions/*` table and checks (`options`), the drbdadm and drbdsetup
//! command lines (`commands`), the parser of `drbdsetup events2` (`events`), and what the
//! node's drbd-utils and kernel module versions allow in a file (`version`).
//!
//! Nothing here runs a command or writes a file; the satellite's driver does, through its
//! host-command runner.

pub mod commands;
pub mod events;
pub mod options;
pub mod res_file;
pub mod version;

pub use options::{DrbdOptions, OptionError, Section};
pub use res_file::{Member, ResFileError, ResourceFile, Volume};
pub use version::{DrbdVersions, Version};
