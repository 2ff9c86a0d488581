//! `ferrite`: the command line of a Ferrite cluster.

fn main() {}
