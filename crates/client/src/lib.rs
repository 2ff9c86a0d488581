//! A blocking client for the Ferrite controller's REST API v1 (LINSTOR's API).
//!
//! The client owns three things and nothing else (tables and wording belong to the CLI):
//!
//! - **Which controller.** [`controllers::resolve`] turns `--controllers`, the environment and
//!   the client configuration file into an ordered list; [`Client::connect`] asks each in turn
//!   for its version and keeps the first that answers.
//! - **Connection errors versus API errors.** A controller that cannot be reached, times out or
//!   answers something that is not LINSTOR's JSON is a [`ClientError`]; a controller that refuses
//!   a request answers `ApiCallRc` entries, which come back as an [`Answer`].
//! - **The `ApiCallRc` envelope.** Every mutation returns its entries (from
//!   `ferrite_types::ApiCallRc`) together with the body as received, so a caller can print them
//!   or pass the JSON through untouched.
//!
//! # Client configuration file
//!
//! `$XDG_CONFIG_HOME/ferrite/client.toml` (default `~/.config/ferrite/client.toml`), then
//! `/etc/ferrite/client.toml`; the first that names controllers is used:
//!
//! ```toml
//! # Tried in order until one answers; the port defaults to 3370.
//! controllers = ["10.0.0.1:3370", "10.0.0.2"]
//! ```
//!
//! `controllers` may also be one comma-separated string. `--controllers`, `FERRITE_CONTROLLERS`
//! and `LS_CONTROLLERS` take precedence, in that order.

pub mod client;
pub mod controllers;
pub mod endpoints;
pub mod error;
pub mod queries;
pub mod snapshots;

pub use client::{ApiVersion, CONNECT_TIMEOUT, Client, DEFAULT_TIMEOUT, HANDSHAKE_TIMEOUT, Method};
pub use controllers::{ControllerAddress, Controllers, Source};
pub use endpoints::{
    ListFilter, NewNode, NewResource, NewResourceDefinition, NewResourceGroup, NewStoragePool,
    NewVolumeDefinition, NewVolumeGroup,
};
pub use error::{Answer, Attempt, ClientError, Listing};
