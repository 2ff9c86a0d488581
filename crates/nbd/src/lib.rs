//! An NBD server in front of a [`ferrite_block::Volume`].
//!
//! (Being written: see docs/mirror.md, "Frontends".)
