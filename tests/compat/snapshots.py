#!/usr/bin/env python3
"""Snapshots, restores, rollbacks and clones, driven through python-linstor 1.29.1 (the library
behind the `linstor` CLI and the Proxmox plugin) against a Ferrite controller.

Started by crates/testkit/tests/snapshots.rs with a controller and two satellites running. The
resources have the STORAGE layer alone on FILE_THIN pools, so each volume's data is its pool
file: the script writes known bytes into the files and checks, after each step, the bytes every
snapshot, restore, rollback and clone holds. Exit status 0 means every step passed.
"""

import argparse
import os
import sys
import time

import linstor
from linstor import Linstor
from linstor import sharedconsts as apiconsts

MIB_KIB = 1 << 10
WAIT = 60.0
BLOCK = 4096


def check(replies, what):
    """Fails unless no reply carries the error mask; returns the replies."""
    errors = [r for r in replies if r.is_error()]
    assert not errors, "%s failed: %s" % (what, "; ".join(str(e) for e in errors))
    return replies


def expect_error(replies, what, ret_code):
    """Fails unless the first error carries `ret_code`'s code."""
    errors = [r for r in replies if r.is_error()]
    assert errors, "%s should have failed but answered %s" % (what, [str(r) for r in replies])
    got, want = errors[0].ret_code & 0x7FFF, ret_code & 0x7FFF
    assert got == want, "%s: wrong code %d, wanted %d (%s)" % (what, got, want, errors[0])
    return errors


def wait_for(what, condition, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting for " + what)


def pattern(tag):
    """A block of bytes that says which write it came from."""
    return (tag.encode() * BLOCK)[:BLOCK]


def write_block(path, tag, offset=0):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(pattern(tag))
        f.flush()
        os.fsync(f.fileno())


def read_block(path, offset=0):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(BLOCK)


def snapshots(lin, resource=None):
    reply = lin.snapshot_dfn_list(filter_by_resources=[resource] if resource else None)[0]
    return {s.name: s for s in reply.snapshots}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--controller", required=True)
    parser.add_argument("--node", action="append", default=[], help="NAME=IP:PORT")
    parser.add_argument("--pool-dir", action="append", default=[], help="NAME=DIR")
    args = parser.parse_args()
    nodes = dict(n.split("=", 1) for n in args.node)
    pools = dict(p.split("=", 1) for p in args.pool_dir)
    names = sorted(nodes)

    with Linstor(args.controller) as lin:
        for name in names:
            ip, port = nodes[name].rsplit(":", 1)
            check(lin.node_create(name, "Combined", ip, port=int(port)), "node create " + name)
        wait_for("nodes online", lambda: all(
            n.connection_status == "ONLINE" for n in lin.node_list_raise().nodes))
        for name in names:
            check(lin.storage_pool_create(name, "pool", "FILE_THIN", pools[name]),
                  "storage pool create on " + name)
        for pool in lin.storage_pool_list_raise(filter_by_stor_pools=["pool"]).storage_pools:
            assert pool.supports_snapshots(), "a FILE_THIN pool takes snapshots"

        # A resource on both nodes, STORAGE alone: its data is the pool file on each node.
        check(lin.resource_dfn_create("web", layer_list=["storage"]), "rd create")
        check(lin.volume_dfn_create("web", 16 * MIB_KIB), "vd create")
        for name in names:
            check(lin.resource_create([linstor.ResourceData(name, "web", storage_pool="pool")]),
                  "resource create on " + name)
        files = {n: os.path.join(pools[n], "web_00000.img") for n in names}
        wait_for("the volumes", lambda: all(os.path.exists(f) for f in files.values()))
        for name, path in files.items():
            write_block(path, "A-" + name)

        # Take it on every node.
        replies = check(lin.snapshot_create(None, "web", "snap1"), "snapshot create")
        assert any("successfully taken" in r.message for r in replies), [str(r) for r in replies]
        snap = snapshots(lin, "web")["snap1"]
        assert sorted(snap.nodes) == names, snap.nodes
        assert "SUCCESSFUL" in snap.flags, snap.flags
        assert [v.size for v in snap.snapshot_volume_definitions] == [16 * MIB_KIB]
        for name in names:
            taken = os.path.join(pools[name], "web_00000@snap1.snap")
            assert read_block(taken) == pattern("A-" + name), "snapshot holds the data of " + name

        # Taken again under the same name: refused as LINSTOR refuses it.
        expect_error(lin.snapshot_create(None, "web", "snap1"), "snapshot exists",
                     apiconsts.FAIL_EXISTS_SNAPSHOT_DFN)
        # On one node only.
        check(lin.snapshot_create([names[0]], "web", "one"), "snapshot on one node")
        assert snapshots(lin, "web")["one"].nodes == [names[0]]

        # New data after the snapshot.
        for name, path in files.items():
            write_block(path, "B-" + name)

        # The definition cannot go while it has snapshots.
        expect_error(lin.resource_dfn_delete("web"), "rd delete with snapshots",
                     apiconsts.FAIL_EXISTS_SNAPSHOT_DFN)
        assert lin.resource_dfn_list_raise(filter_by_resource_definitions=["web"]) \
            .resource_definitions, "the definition is still there"

        # Restore into a new definition: volume definitions, then resources on both nodes.
        check(lin.resource_dfn_create("restored", layer_list=["storage"]), "rd create restored")
        check(lin.snapshot_volume_definition_restore("web", "snap1", "restored"), "vd restore")
        check(lin.snapshot_resource_restore(None, "web", "snap1", "restored"), "resource restore")
        for name in names:
            path = os.path.join(pools[name], "restored_00000.img")
            wait_for("restored volume on " + name, lambda p=path: os.path.exists(p))
            assert read_block(path) == pattern("A-" + name), "restored data on " + name
        # Restoring into a definition that has resources is refused.
        expect_error(lin.snapshot_resource_restore(None, "web", "snap1", "restored"),
                     "restore twice", apiconsts.FAIL_EXISTS_RSC)

        # Roll back: the data written since is gone, on every node.
        check(lin.snapshot_rollback("web", "snap1"), "rollback")
        for name, path in files.items():
            assert read_block(path) == pattern("A-" + name), "rolled back data on " + name
        write_block(files[names[0]], "C")

        # Clone: the current data, on the same nodes.
        started = lin.resource_dfn_clone("web", "webclone")
        assert started.clone_name == "webclone", started
        errors = [m for m in started.messages if m.is_error()]
        assert not errors, [str(e) for e in errors]
        assert lin.resource_dfn_clone_wait_complete("web", "webclone", timeout=WAIT)
        clone_file = os.path.join(pools[names[0]], "webclone_00000.img")
        assert read_block(clone_file) == pattern("C"), "the clone has the current data"
        # The clone's snapshot went once the clone was made.
        wait_for("the clone's snapshot to go",
                 lambda: not [s for s in snapshots(lin, "web") if s.startswith("CF_")])

        # Several resources at once.
        check(lin.snapshot_create_multi(None, ["web", "restored"], "multi1"), "multi snapshot")
        assert "multi1" in snapshots(lin, "web") and "multi1" in snapshots(lin, "restored")

        # Delete them all; the files go with them.
        for resource, name in [("web", "snap1"), ("web", "one"), ("web", "multi1"),
                               ("restored", "multi1")]:
            check(lin.snapshot_delete(resource, name), "snapshot delete %s/%s" % (resource, name))
        wait_for("every snapshot to go", lambda: not snapshots(lin))
        for name in names:
            left = [f for f in os.listdir(pools[name]) if f.endswith(".snap")]
            assert not left, "snapshot files left on %s: %s" % (name, left)
        # Deleting one that does not exist is an error that says so.
        expect_error(lin.snapshot_delete("web", "snap1"), "delete a deleted snapshot",
                     apiconsts.FAIL_NOT_FOUND_SNAPSHOT_DFN)

        # Now the definition can go.
        check(lin.resource_dfn_delete("web"), "rd delete without snapshots")
    print("python-linstor snapshot suite passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
