#!/usr/bin/env python3
"""The article's tutorial, driven through python-linstor 1.29.1 (the library the `linstor` CLI,
the Proxmox plugin and many integrations use) against a Ferrite controller.

Started by crates/testkit/tests/compat_python.rs with a controller and four satellites running;
every step asserts on what python-linstor parsed from the controller's answers. Exit status 0
means the whole tutorial passed; any failure raises with the step that failed.

The tutorial gives its definition no layer list, so it gets LINSTOR's default stack, DRBD,STORAGE,
at its first placement, run by Ferrite's MIRROR engine where no node runs DRBD 9: python-linstor
sees DRBD layer data, a diskless tiebreaker, disk states from the engine and the engine's block
devices.
"""

import argparse
import os
import sys
import time

import linstor
from linstor import Linstor, ResourceData
from linstor.version import VERSION as LIBRARY_VERSION

GIB_KIB = 1 << 20
# Engine state reaches the controller a moment after the answer that caused it. Longer than the
# satellite's reconcile interval (30 s): a change the engine fails to apply is retried at the next
# pass, and a MIRROR restart for a changed configuration sometimes fails to bind its port while the
# old listener is still open ("Address already in use"), a known engine bug.
WAIT = 75.0
# A full sync of 2 GiB between two user-space engines on a loaded 2-core machine.
FULL_SYNC = 180.0
# MIRROR's metadata for 2 GiB is a few MiB; anything beyond this is not metadata.
METADATA_BOUND = 64 << 20
# Ferrite's own info code: which replication engine a definition got, and why.
INFO_REPLICATION_ENGINE = 19000


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


def has_code(replies, ret_code):
    """Whether some reply has the type mask and the code of a python-linstor constant."""
    return any(r.ret_code & 0xC000000000000000 == ret_code & 0xC000000000000000
               and r.ret_code & 0x7FFF == ret_code & 0x7FFF for r in replies)


def wait_for(what, predicate, timeout=WAIT):
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
    parser.add_argument("--device-root", action="append", required=True,
                        help="name=/directory: the satellite's --device-root, where its engine links block devices")
    args = parser.parse_args()
    nodes = dict(n.split("=", 1) for n in args.node)
    pool_dirs = dict(p.split("=", 1) for p in args.pool_dir)
    device_roots = dict(d.split("=", 1) for d in args.device_root)
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
        assert "MIRROR" in node.resource_layers, node.resource_layers

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
    assert not [r for r in replies if r.is_warning()], "the default stack replicates: %s" % [str(r) for r in replies]
    assert has_code(replies, linstor.consts.MASK_INFO | INFO_REPLICATION_ENGINE), [str(r) for r in replies]
    assert has_code(replies, linstor.consts.INFO_TIE_BREAKER_CREATED), [str(r) for r in replies]

    def backing(node):
        return os.path.join(pool_dirs[node], "my_ssd_res_00000.img")

    def engine_device(node):
        return os.path.join(device_roots[node], "my_ssd_res", "0")

    def check_layers(rsc):
        layer = rsc.layer_data
        assert layer.type == "DRBD", layer.type
        assert layer.drbd_resource is not None and layer.drbd_resource.data_v1["engine"] == "MIRROR", rsc.data_v1
        assert [c.type for c in layer.children] == ["STORAGE"], layer.layer_stack
        assert layer.layer_stack == ["DRBD", "STORAGE"], layer.layer_stack

    # linstor resource list / volume list: two replicas and a diskless tiebreaker
    def placed_resources():
        resources = lin.resource_list_raise(filter_by_resources=["my_ssd_res"]).resources
        return resources
    resources = placed_resources()
    assert len(resources) == 3, [(r.node_name, r.flags) for r in resources]
    for rsc in resources:
        check_layers(rsc)
    diskful = sorted(r.node_name for r in resources if linstor.consts.FLAG_DISKLESS not in r.flags)
    assert len(diskful) == 2, diskful
    tiebreakers = [r for r in resources if linstor.consts.FLAG_TIE_BREAKER in r.flags]
    assert len(tiebreakers) == 1, [(r.node_name, r.flags) for r in resources]
    for flag in ("DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"):
        assert flag in tiebreakers[0].flags, tiebreakers[0].flags
    tiebreaker = tiebreakers[0].node_name

    def volumes_where(what, accept, on, timeout=WAIT):
        """Waits until the volume of each node in `on` passes accept(vol); returns them by node."""
        def probe():
            found = {}
            for rsc in lin.volume_list_raise(filter_by_resources=["my_ssd_res"]).resources:
                for vol in rsc.volumes:
                    found[rsc.node_name] = vol
            ok = all(n in found and accept(found[n]) for n in on)
            return found if ok else None
        return wait_for("%s on %s" % (what, on), probe, timeout)

    def volumes_with_state(state, on, timeout=WAIT):
        return volumes_where(state, lambda vol: vol.state.disk_state == state, on, timeout)

    def engine_ready(node, peers):
        """The engine reports the member's block device and its connection to each peer."""
        def accept(vol):
            replication = vol.state.replication_states
            return (vol.device_path == engine_device(node) and sorted(replication) == sorted(peers)
                    and all(s.replication_state == "Established" for s in replication.values()))
        return accept

    def check_diskful(node, vol):
        assert vol.number == 0
        assert vol.storage_pool_name == "pool_ssd"
        # The engine's block device on top, the backing file's loop device below it.
        assert vol.device_path == engine_device(node), vol.device_path
        assert os.path.exists(vol.device_path), vol.device_path
        assert vol.drbd_data is not None and vol.drbd_data.device_path == vol.device_path
        assert vol.drbd_data.usable_size == 2 * GIB_KIB, vol.drbd_data.usable_size
        loop = vol.storage_data.data_v1["device_path"]
        assert loop.startswith("/dev/loop") and os.path.exists(loop), loop
        with open("/sys/block/%s/loop/backing_file" % os.path.basename(loop)) as f:
            assert f.read().strip() == backing(node), loop
        size = os.path.getsize(backing(node))
        assert 2 << 30 < size <= (2 << 30) + METADATA_BOUND, (backing(node), size)

    # A new resource skips the initial sync: UpToDate and Established at once, and nothing but
    # metadata written to the sparse backing files.
    volumes_with_state("UpToDate", diskful)
    members = diskful + [tiebreaker]
    for node in members:
        volumes_where("engine ready", engine_ready(node, [m for m in members if m != node]), [node])
    volumes = volumes_with_state("UpToDate", diskful)
    for node in diskful:
        check_diskful(node, volumes[node])
        allocated = os.stat(backing(node)).st_blocks * 512
        assert allocated <= METADATA_BOUND, "an initial sync wrote %s: %d bytes" % (backing(node), allocated)
    volumes = volumes_with_state("Diskless", [tiebreaker])
    assert volumes[tiebreaker].device_path == engine_device(tiebreaker), volumes[tiebreaker].device_path
    assert not os.path.exists(backing(tiebreaker)), "a tiebreaker has no backing file"

    definitions = lin.resource_dfn_list_raise(query_volume_definitions=True).resource_definitions
    assert [rd.name for rd in definitions] == ["my_ssd_res"]
    assert definitions[0].resource_group_name == "my_ssd_group"
    assert [vd.size for vd in definitions[0].volume_definitions] == [2 * GIB_KIB]
    assert [layer.type for layer in definitions[0].layer_data] == ["DRBD", "STORAGE"], definitions[0].data_v1

    # linstor resource create NODE4 my_ssd_res --diskless: a third vote, so the tiebreaker goes.
    diskless_node = [n for n in names if n not in diskful and n != tiebreaker][0]
    replies = check(lin.resource_create([ResourceData(diskless_node, "my_ssd_res", diskless=True)]), "resource create --diskless")
    assert has_code(replies, linstor.consts.INFO_TIE_BREAKER_DELETING), [str(r) for r in replies]
    volumes = volumes_with_state("Diskless", [diskless_node])
    flags = {r.node_name: r.flags for r in placed_resources()}
    assert "DISKLESS" in flags[diskless_node] and "TIE_BREAKER" not in flags[diskless_node], flags
    wait_for("the tiebreaker to go", lambda: tiebreaker not in [r.node_name for r in placed_resources()])
    members = diskful + [diskless_node]
    volumes_where("engine ready", engine_ready(diskless_node, diskful), [diskless_node])
    assert not os.path.exists(backing(diskless_node)), "a diskless resource has no backing file"

    # linstor resource toggle-disk NODE4 my_ssd_res --storage-pool pool_ssd: a full sync,
    # Inconsistent (SyncTarget) until it is UpToDate.
    check(lin.resource_toggle_disk(diskless_node, "my_ssd_res", storage_pool="pool_ssd"), "toggle-disk to diskful")
    seen = []

    def synced(vol):
        step = vol.state.disk_state
        if any(s.replication_state == "SyncTarget" for s in vol.state.replication_states.values()):
            step += "/SyncTarget"
        if not seen or seen[-1] != step:
            seen.append(step)
        return vol.state.disk_state == "UpToDate"
    volumes = volumes_where("full sync", synced, [diskless_node], FULL_SYNC)
    # Nothing was written to the volume, so its sync can be over before the first look, and
    # Inconsistent is not always seen; what is seen goes the way of a sync, never through a state
    # that would mean lost or refused data.
    # (The engine's report at the end of a sync can show the disk UpToDate while the peer is still
    # SyncTarget, for a moment.)
    sync_states = ("Diskless", "Inconsistent", "Inconsistent/SyncTarget", "UpToDate/SyncTarget", "UpToDate")
    assert all(step in sync_states for step in seen), "a new disk is filled by a sync: %s" % seen
    volumes = volumes_where("engine ready", engine_ready(diskless_node, diskful), [diskless_node])
    check_diskful(diskless_node, volumes[diskless_node])

    # linstor resource toggle-disk NODE1 my_ssd_res --diskless (the other two are UpToDate)
    first = diskful[0]
    check(lin.resource_toggle_disk(first, "my_ssd_res", diskless=True), "toggle-disk to diskless")
    volumes_with_state("Diskless", [first])
    wait_for("backing file removed", lambda: not os.path.exists(backing(first)))
    volumes_with_state("UpToDate", [diskful[1], diskless_node])

    # linstor resource delete NODE1 my_ssd_res: two disks are left and no diskless member, so a
    # tiebreaker comes back, on the node that had the first one.
    replies = check(lin.resource_delete(first, "my_ssd_res"), "resource delete")
    assert has_code(replies, linstor.consts.INFO_TIE_BREAKER_CREATED), [str(r) for r in replies]
    wait_for("%s gone" % first, lambda: first not in [r.node_name for r in placed_resources()])
    resources = placed_resources()
    remaining = sorted(r.node_name for r in resources if "DISKLESS" not in r.flags)
    assert remaining == sorted([diskful[1], diskless_node]), remaining
    flags = {r.node_name: r.flags for r in resources}
    assert len(flags) == 3 and linstor.consts.FLAG_TIE_BREAKER in flags.get(tiebreaker, []), flags
    volumes_with_state("Diskless", [tiebreaker])
    assert not os.path.exists(backing(tiebreaker)), "a tiebreaker has no backing file"
    wait_for("%s's device removed" % first, lambda: not os.path.lexists(engine_device(first)))

    # Errors come back as ApiCallRc lists the library understands.
    expect_error(lin.resource_delete("nonexistent", "my_ssd_res"), "delete on an unknown node", linstor.consts.FAIL_NOT_FOUND_NODE)
    expect_error(lin.resource_group_spawn("my_ssd_group", "my_ssd_res", ["1G"]), "spawn of an existing definition",
                 linstor.consts.FAIL_EXISTS_RSC_DFN)

    # Clean up: delete the definition and check every backing file is gone.
    check(lin.resource_dfn_delete("my_ssd_res"), "resource-definition delete")
    wait_for("every resource gone", lambda: not placed_resources())
    for node in names:
        for path in (backing(node), engine_device(node)):
            wait_for("%s removed" % path, lambda p=path: not os.path.lexists(p))
    lin.disconnect()
    print("python-linstor %s: tutorial OK" % LIBRARY_VERSION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
