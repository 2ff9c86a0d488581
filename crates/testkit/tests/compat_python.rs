//! The python-linstor compatibility suite: `tests/compat/tutorial.py` drives a real cluster
//! through the whole article tutorial with python-linstor 1.29.1 from PyPI (installed by
//! `scripts/setup.sh`): a replicated definition with LINSTOR's default stack, run by the MIRROR
//! engine, checked through what python-linstor parses and on the satellites' disks; and
//! `tests/compat/parity.py` drives the calls beyond the tutorial.

use anyhow::Result;
use ferrite_testkit::compat::run_python_linstor;

#[test]
fn python_linstor_runs_the_tutorial() -> Result<()> {
    run_python_linstor("tutorial.py", 4, true, "tutorial")
}

/// `tests/compat/parity.py`: the calls beyond the tutorial that LINSTOR's integrations make
/// (size queries, space report, key-value store, connections, LINSTOR's answers to deleting
/// what does not exist, 501 for what Ferrite does not serve), with python-linstor on three
/// real satellites.
#[test]
fn python_linstor_runs_the_calls_beyond_the_tutorial() -> Result<()> {
    run_python_linstor("parity.py", 3, false, "parity calls")
}
