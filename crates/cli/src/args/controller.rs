//! `controller` (`c`): version, properties and the store backup.

use clap::{Args, Subcommand};

use super::{PastableOnly, PropertyArgs};

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Print the controller's version.
    #[command(visible_alias = "v")]
    Version,
    /// Print the controller's properties.
    #[command(visible_alias = "lp")]
    ListProperties(PastableOnly),
    /// Set a controller property (no value deletes it).
    #[command(visible_alias = "sp")]
    SetProperty(PropertyArgs),
    /// Write a consistent copy of the controller's store to FILE on the controller's host.
    #[command(
        visible_aliases = ["backupdb", "bakdb"],
        long_about = "Write a consistent copy of the controller's store (an SQLite database, \
                      changes still in the write-ahead log included) to FILE on the \
                      controller's host. FILE must be an absolute path there and must not exist \
                      yet; a backup never overwrites a file.\n\n\
                      Restore it on the stopped controller with \
                      'ferrite-controller --restore FILE'. Satellites then take the restored \
                      state; volumes the backup does not know are kept on their nodes as \
                      orphans ('ferrite node orphans list')."
    )]
    Backup(ControllerBackup),
}

#[derive(Debug, Args)]
pub struct ControllerBackup {
    /// Absolute path of the new backup file on the controller's host.
    #[arg(value_name = "FILE", value_parser = parse_absolute_path)]
    pub file: String,
}

/// A path the controller opens on its own host: only an absolute path means the same there as
/// here, so a relative one is refused before anything is sent.
pub fn parse_absolute_path(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(
            "the backup needs a file name: an absolute path on the controller's host \
                    (e.g. /var/lib/ferrite/backup.db)"
                .to_string(),
        );
    }
    if !std::path::Path::new(text).is_absolute() {
        return Err(format!(
            "'{text}' is a relative path, but the controller writes the backup on its own host, \
             where this client's working directory means nothing; give an absolute path on the \
             controller's host (e.g. /var/lib/ferrite/backup.db)"
        ));
    }
    Ok(text.to_string())
}
