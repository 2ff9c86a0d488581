//! Snapshots end to end with a real client: `tests/compat/snapshots.py` drives a controller
//! and two real satellites through python-linstor 1.29.1 (the library behind the `linstor` CLI)
//! — snapshot create (all nodes, one node, several resources at once), list, delete, restore
//! into a new definition, rollback and `resource-definition clone` — and checks the bytes each
//! step leaves in the FILE_THIN pools' files.

use anyhow::Result;
use ferrite_testkit::compat::run_python_linstor;

#[test]
fn python_linstor_takes_restores_rolls_back_and_clones_snapshots() -> Result<()> {
    run_python_linstor("snapshots.py", 2, false, "snapshot suite")
}
