//! Indexes derived from the graph and kept beside it ([`Cluster::derived`]): the index of
//! positions (`positions`) and the index of each node's definitions (`by_node`).
//!
//! Each is built on first use and dropped by every change to the graph (`Op::apply` calls
//! [`DerivedIndexes::forget`]). A clone of the graph starts without them: a scratch copy for a
//! plan may be changed without `Op::apply`, so it builds its own if it needs one. Each also
//! records the revision it was built at, and its reader ignores one of another revision.
//!
//! [`Cluster::derived`]: super::Cluster::derived

use std::sync::OnceLock;

use super::by_node::Ordinals;
use super::positions::Marks;

/// One index, built on first use.
#[derive(Debug)]
pub struct Derived<T> {
    built: OnceLock<T>,
}

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Derived {
            built: OnceLock::new(),
        }
    }
}

impl<T> Clone for Derived<T> {
    /// A clone of the graph may be changed without `Op::apply`, so it starts without the index.
    fn clone(&self) -> Self {
        Derived::default()
    }
}

impl<T> Derived<T> {
    /// The index, built by `build` if it is not there yet.
    pub fn get_or_build(&self, build: impl FnOnce() -> T) -> &T {
        self.built.get_or_init(build)
    }

    fn forget(&mut self) {
        self.built = OnceLock::new();
    }
}

/// Every index derived from the graph.
#[derive(Debug, Default, Clone)]
pub struct DerivedIndexes {
    /// Where the list of every resource passes each 64th definition, for pages.
    pub(super) positions: Derived<Marks>,
    /// Which definitions have a resource on each node, for full states.
    pub(super) by_node: Derived<Ordinals>,
}

impl DerivedIndexes {
    /// Drops every index; the graph is about to change.
    pub fn forget(&mut self) {
        self.positions.forget();
        self.by_node.forget();
    }
}
