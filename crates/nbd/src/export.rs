//! Exports: the named volumes a server offers, and the table that holds them.
//!
//! The table is the only state shared between connections. It is read when a client negotiates
//! (`NBD_OPT_LIST`, `NBD_OPT_INFO`, `NBD_OPT_GO`, `NBD_OPT_EXPORT_NAME`) and changed when the
//! owner adds or removes an export; removing one tells every connection in transmission on it
//! to close. What a connection does with the volume is [`crate::transmission`]'s business.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use ferrite_block::Volume;
use tokio::sync::watch;

use crate::error::ServerError;
use crate::protocol::{
    self, TRANSMISSION_CAN_MULTI_CONN, TRANSMISSION_HAS_FLAGS, TRANSMISSION_READ_ONLY,
    TRANSMISSION_SEND_FLUSH, TRANSMISSION_SEND_FUA, TRANSMISSION_SEND_TRIM,
    TRANSMISSION_SEND_WRITE_ZEROES,
};

/// The name a client asks for: UTF-8, no NUL, at most 4096 bytes (the spec's rules for
/// strings). The empty name is the default export, what a client gets when it names none (e.g.
/// `nbd+unix:///?socket=…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExportName(String);

impl ExportName {
    pub fn new(name: impl Into<String>) -> Result<ExportName, ServerError> {
        let name = name.into();
        match protocol::check_name(name.as_bytes()) {
            Ok(_) => Ok(ExportName(name)),
            Err(reason) => Err(ServerError::InvalidExportName { name, reason }),
        }
    }

    /// The default export's name, the empty string.
    pub fn default_export() -> ExportName {
        ExportName(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExportName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// How one export is offered.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub name: ExportName,
    /// Shown by `NBD_INFO_DESCRIPTION` (e.g. `nbdinfo`), when set.
    pub description: Option<String>,
    /// `NBD_FLAG_READ_ONLY`: writes, trims and write-zeroes fail with `NBD_EPERM` without
    /// reaching the volume.
    pub read_only: bool,
    /// `NBD_FLAG_CAN_MULTI_CONN`: a flush or FUA on one connection covers the writes completed
    /// on every other connection. True for any [`Volume`] (its flush is per volume, not per
    /// session), so on by default; turn it off for a volume that keeps per-session caches.
    pub multi_conn: bool,
}

impl ExportConfig {
    pub fn new(name: ExportName) -> ExportConfig {
        ExportConfig {
            name,
            description: None,
            read_only: false,
            multi_conn: true,
        }
    }

    pub fn read_only(mut self, read_only: bool) -> ExportConfig {
        self.read_only = read_only;
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> ExportConfig {
        self.description = Some(description.into());
        self
    }

    pub fn multi_conn(mut self, multi_conn: bool) -> ExportConfig {
        self.multi_conn = multi_conn;
        self
    }
}

/// One export in the table: its configuration, its volume, and the signal that closes its
/// connections when it is removed.
pub(crate) struct Export<V> {
    pub(crate) config: ExportConfig,
    pub(crate) volume: Arc<V>,
    closing: watch::Sender<bool>,
}

impl<V: Volume> Export<V> {
    /// The transmission flags a client sees for this export.
    pub(crate) fn transmission_flags(&self) -> u16 {
        let mut flags = TRANSMISSION_HAS_FLAGS | TRANSMISSION_SEND_FLUSH;
        if self.config.read_only {
            flags |= TRANSMISSION_READ_ONLY;
        } else {
            flags |=
                TRANSMISSION_SEND_FUA | TRANSMISSION_SEND_TRIM | TRANSMISSION_SEND_WRITE_ZEROES;
        }
        if self.config.multi_conn {
            flags |= TRANSMISSION_CAN_MULTI_CONN;
        }
        flags
    }

    pub(crate) fn name(&self) -> &ExportName {
        &self.config.name
    }
}

/// An export a connection chose, with the receiver that tells it the export was removed.
pub(crate) struct Chosen<V> {
    pub(crate) export: Arc<Export<V>>,
    pub(crate) removed: watch::Receiver<bool>,
}

/// The table of exports, by name.
pub(crate) struct Exports<V> {
    by_name: RwLock<BTreeMap<ExportName, Arc<Export<V>>>>,
}

impl<V: Volume> Exports<V> {
    pub(crate) fn new() -> Exports<V> {
        Exports {
            by_name: RwLock::new(BTreeMap::new()),
        }
    }

    pub(crate) fn add(&self, config: ExportConfig, volume: Arc<V>) -> Result<(), ServerError> {
        if let Some(description) = &config.description
            && let Err(reason) = protocol::check_name(description.as_bytes())
        {
            return Err(ServerError::InvalidDescription {
                name: config.name,
                reason,
            });
        }
        let mut by_name = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        if by_name.contains_key(&config.name) {
            return Err(ServerError::ExportExists(config.name));
        }
        let (closing, _) = watch::channel(false);
        by_name.insert(
            config.name.clone(),
            Arc::new(Export {
                config,
                volume,
                closing,
            }),
        );
        Ok(())
    }

    /// Takes the export out of the table, so no new client can choose it, and tells its
    /// connections to close.
    pub(crate) fn remove(&self, name: &ExportName) -> Result<(), ServerError> {
        let removed = self
            .by_name
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| ServerError::NoSuchExport(name.clone()))?;
        removed.closing.send_replace(true);
        Ok(())
    }

    /// The export of that name, if any. Subscribing under the lock means a removal either
    /// happened before (the export is not found) or is seen by the receiver.
    pub(crate) fn choose(&self, name: &str) -> Option<Chosen<V>> {
        let by_name = self.by_name.read().unwrap_or_else(|e| e.into_inner());
        let export = by_name.get(&ExportName(name.to_string()))?;
        Some(Chosen {
            export: Arc::clone(export),
            removed: export.closing.subscribe(),
        })
    }

    pub(crate) fn names(&self) -> Vec<ExportName> {
        let by_name = self.by_name.read().unwrap_or_else(|e| e.into_inner());
        by_name.keys().cloned().collect()
    }
}
