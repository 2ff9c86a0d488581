//! Listings read once per pass: a provider whose look-up of one volume lists a whole pool (LVM's
//! `lvs` of a volume group, ZFS's `zfs list` of a dataset) keeps each listing from
//! `Provider::begin_pass` to `Provider::end_pass`, so that a pass over a node with a thousand
//! volumes runs one listing per pool instead of one per look-up (a pass looks each volume up
//! at least twice: to find it, then to activate it).
//!
//! A listing never answers for what the provider changed since: any command that may change
//! the host drops every listing ([`PassListings::forget`]). Nor for long: one older than
//! [`LISTING_MAX_AGE`] is read again, so a long pass in slices sees what others changed
//! within seconds. Outside a pass nothing is kept and every look-up lists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::runner::{CommandError, CommandLine, CommandOutput, HostCommands};

/// How long a pool's listing answers look-ups within a pass.
pub const LISTING_MAX_AGE: Duration = Duration::from_secs(2);

/// The listings of whole pools read in the pass under way, by pool; `None` outside a pass.
/// Shared by the providers that list the same pools (LVM and LVM_THIN; ZFS and ZFS_THIN).
pub struct PassListings<T>(Mutex<Option<HashMap<String, Listing<T>>>>);

/// A pool's volumes, and when they were listed.
type Listing<T> = (Instant, Arc<[T]>);

impl<T> Default for PassListings<T> {
    fn default() -> Self {
        PassListings(Mutex::new(None))
    }
}

impl<T> PassListings<T> {
    fn lock(&self) -> MutexGuard<'_, Option<HashMap<String, Listing<T>>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps listings from now until [`PassListings::end`].
    pub fn begin(&self) {
        *self.lock() = Some(HashMap::new());
    }

    /// Keeps no more listings.
    pub fn end(&self) {
        *self.lock() = None;
    }

    /// Drops the listings read so far (the host was changed).
    pub fn forget(&self) {
        if let Some(listings) = self.lock().as_mut() {
            listings.clear();
        }
    }

    /// Runs `command` through `runner`; one that may change the host drops the listings read
    /// so far, whether it succeeded or not.
    pub fn run(
        &self,
        runner: &dyn HostCommands,
        command: &CommandLine,
    ) -> Result<CommandOutput, CommandError> {
        let output = runner.run(command);
        if !command.read_only {
            self.forget();
        }
        output
    }

    /// `pool`'s listing, if one read in this pass is still young enough.
    pub fn get(&self, pool: &str) -> Option<Arc<[T]>> {
        let listings = self.lock();
        let (read, volumes) = listings.as_ref()?.get(pool)?;
        (read.elapsed() < LISTING_MAX_AGE).then(|| volumes.clone())
    }

    /// Keeps `volumes`, read at `read`, if a pass is under way.
    pub fn keep(&self, pool: &str, read: Instant, volumes: Arc<[T]>) {
        if let Some(listings) = self.lock().as_mut() {
            listings.insert(pool.to_string(), (read, volumes));
        }
    }
}
