#!/usr/bin/env python3
"""The article's tutorial, driven through python-linstor 1.29.1 (the library the `linstor` CLI,
the Proxmox plugin and many integrations use) against a Ferrite controller.

Started by crates/testkit/tests/compat_python.rs with a controller and four satellites running;
every step asserts on what python-linstor parsed from the controller's answers. Exit status 0
means the whole tutorial passed; any failure raises with the step that failed.
"""

import argparse
import os
import sys
import time

import linstor
from linstor import Linstor, ResourceData
from linstor.version import VERSION as LIBRARY_VERSION

GIB_KIB = 1 << 20


def check(replies, what):
    """Fails unless no reply carries the error mask; returns the replies."""
    errors = [r for r in replies if r.is_error()]
    assert not errors, "%s failed: %s" % (what, "; ".join(str(e) for e in errors))
    return replies


def expect_error(replies, what, ret_code=None):
    """Fails unless some reply is an error; with ret_code (a python-linstor constant, masks
    included), the first error must carry the same code in its low bits."""
    errors = [r for r in replies if r.is_error()]
    assert errors, "%s should have failed but answered %s" % (what, [str(r) for r in replies])
    if ret_code is not None:
        got, want = errors[0].ret_code & 0x7FFF, ret_code & 0x7FFF
        assert got == want, "%s: wrong code %d, wanted %d" % (what, got, want)
    return errors


def wait_for(what, predicate, timeout=20.0):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--controller", required=True, help="e.g. linstor://127.0.0.1:3370")
    parser.add_argument("--node", action="append", required=True, help="name=ip:port")
    parser.add_argument("--pool-dir", action="append", required=True, help="name=/directory")
    args = parser.parse_args()
    nodes = dict(n.split("=", 1) for n in args.node)
    pool_dirs = dict(p.split("=", 1) for p in args.pool_dir)
    names = sorted(nodes)

    lin = Linstor(args.controller)
    lin.connect()

    # Every client call starts with the version handshake.
    version = lin.controller_version()
    assert version.rest_api_version == "1.28.0", version.rest_api_version
    print("controller", version.version, "REST API", version.rest_api_version)

    # linstor node list (empty) / node create NAME IP --node-type combined
    assert lin.node_list_raise().nodes == []
    for name in names:
        ip, port = nodes[name].rsplit(":", 1)
        replies = check(lin.node_create(name, "combined", ip, port=int(port)), "node create " + name)
        assert any("registered" in r.message for r in replies), [str(r) for r in replies]
    duplicate = lin.node_create(names[0], "combined", "127.0.0.99", port=4000)
    expect_error(duplicate, "duplicate node create", linstor.consts.FAIL_EXISTS_NODE)

    # linstor node list
    def all_online():
        listed = lin.node_list_raise().nodes
        return listed if len(listed) == 4 and all(n.connection_status == "ONLINE" for n in listed) else None
    listed = wait_for("four ONLINE nodes", all_online)
    for node in listed:
        assert node.type == "COMBINED", node.type
        assert node.net_interfaces[0].address == nodes[node.name].rsplit(":", 1)[0]
        assert "FILE_THIN" in node.storage_providers, node.storage_providers
        assert "STORAGE" in node.resource_layers, node.resource_layers

    # linstor storage-pool create filethin NODE pool_ssd DIR (the article uses lvm; FILE_THIN
    # runs on any machine)
    for name in names:
        check(lin.storage_pool_create(name, "pool_ssd", "FILE_THIN", pool_dirs[name]), "storage-pool create " + name)
    bad_pool = lin.storage_pool_create(names[0], "pool_bad", "FILE_THIN", "/nonexistent/ferrite/pool")
    expect_error(bad_pool, "storage pool on a missing directory")

    # linstor storage-pool list
    pools = lin.storage_pool_list_raise().storage_pools
    by_kind = {}
    for pool in pools:
        by_kind.setdefault(pool.provider_kind, []).append(pool)
    assert len(by_kind["FILE_THIN"]) == 4 and len(by_kind["DISKLESS"]) == 4, [(p.name, p.provider_kind) for p in pools]
    for pool in by_kind["FILE_THIN"]:
        assert pool.name == "pool_ssd"
        assert pool.free_space is not None and pool.free_space.total_capacity > 0, pool.name
        assert pool.free_space_mgr_name == "%s;pool_ssd" % pool.node_name
    assert "pool_bad" not in [p.name for p in pools], "a refused pool must not exist"

    # linstor resource-group create my_ssd_group --storage-pool pool_ssd --place-count 2
    check(lin.resource_group_create("my_ssd_group", place_count=2, storage_pool=["pool_ssd"]), "resource-group create")
    # linstor volume-group create my_ssd_group
    check(lin.volume_group_create("my_ssd_group"), "volume-group create")
    groups = {g.name: g for g in lin.resource_group_list_raise().resource_groups}
    assert set(groups) == {"DfltRscGrp", "my_ssd_group"}, set(groups)
    assert groups["my_ssd_group"].select_filter.place_count == 2
    assert groups["my_ssd_group"].select_filter.storage_pool_list == ["pool_ssd"]
    volume_groups = lin.volume_group_list_raise("my_ssd_group").volume_groups
    assert [vg.number for vg in volume_groups] == [0]

    # linstor resource-group spawn-resources my_ssd_group my_ssd_res 2G
    replies = check(lin.resource_group_spawn("my_ssd_group", "my_ssd_res", ["2G"]), "spawn-resources")
    warnings = [r for r in replies if r.is_warning()]
    assert any("not replicated" in w.message for w in warnings), "spawn should warn that it is not replicated"

    # linstor resource list / volume list
    def placed_resources():
        resources = lin.resource_list_raise(filter_by_resources=["my_ssd_res"]).resources
        return resources
    resources = placed_resources()
    diskful = sorted(r.node_name for r in resources)
    assert len(diskful) == 2, diskful

    def volumes_with_state(state, on):
        def probe():
            found = {}
            for rsc in lin.volume_list_raise(filter_by_resources=["my_ssd_res"]).resources:
                for vol in rsc.volumes:
                    found[rsc.node_name] = vol
            ok = all(n in found and found[n].state.disk_state == state for n in on)
            return found if ok else None
        return wait_for("%s on %s" % (state, on), probe)

    volumes = volumes_with_state("UpToDate", diskful)
    for node in diskful:
        vol = volumes[node]
        assert vol.number == 0
        assert vol.storage_pool_name == "pool_ssd"
        assert vol.device_path and vol.device_path.startswith("/dev/loop"), vol.device_path
        assert os.path.exists(vol.device_path), vol.device_path
        backing = os.path.join(pool_dirs[node], "my_ssd_res_00000.img")
        assert os.path.getsize(backing) == 2 << 30, backing

    definitions = lin.resource_dfn_list_raise(query_volume_definitions=True).resource_definitions
    assert [rd.name for rd in definitions] == ["my_ssd_res"]
    assert definitions[0].resource_group_name == "my_ssd_group"
    assert [vd.size for vd in definitions[0].volume_definitions] == [2 * GIB_KIB]

    # linstor resource create NODE4 my_ssd_res --diskless
    spare = [n for n in names if n not in diskful]
    diskless_node = spare[-1]
    check(lin.resource_create([ResourceData(diskless_node, "my_ssd_res", diskless=True)]), "resource create --diskless")
    volumes_with_state("Diskless", [diskless_node])
    flags = {r.node_name: r.flags for r in placed_resources()}
    assert "DISKLESS" in flags[diskless_node], flags

    # linstor resource toggle-disk NODE4 my_ssd_res --storage-pool pool_ssd
    check(lin.resource_toggle_disk(diskless_node, "my_ssd_res", storage_pool="pool_ssd"), "toggle-disk to diskful")
    volumes_with_state("UpToDate", [diskless_node])
    # linstor resource toggle-disk NODE1 my_ssd_res --diskless
    first = diskful[0]
    check(lin.resource_toggle_disk(first, "my_ssd_res", diskless=True), "toggle-disk to diskless")
    volumes_with_state("Diskless", [first])
    wait_for("backing file removed", lambda: not os.path.exists(os.path.join(pool_dirs[first], "my_ssd_res_00000.img")))

    # linstor resource delete NODE1 my_ssd_res
    check(lin.resource_delete(first, "my_ssd_res"), "resource delete")
    remaining = sorted(r.node_name for r in placed_resources())
    assert remaining == sorted([diskful[1], diskless_node]), remaining

    # Errors come back as ApiCallRc lists the library understands.
    expect_error(lin.resource_delete("nonexistent", "my_ssd_res"), "delete on an unknown node", linstor.consts.FAIL_NOT_FOUND_NODE)
    expect_error(lin.resource_group_spawn("my_ssd_group", "my_ssd_res", ["1G"]), "spawn of an existing definition",
                 linstor.consts.FAIL_EXISTS_RSC_DFN)

    # Clean up: delete the definition and check every backing file is gone.
    check(lin.resource_dfn_delete("my_ssd_res"), "resource-definition delete")
    for node in names:
        path = os.path.join(pool_dirs[node], "my_ssd_res_00000.img")
        wait_for("%s removed" % path, lambda p=path: not os.path.exists(p))
    lin.disconnect()
    print("python-linstor %s: tutorial OK" % LIBRARY_VERSION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
