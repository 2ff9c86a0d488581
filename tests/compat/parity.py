#!/usr/bin/env python3
"""LINSTOR calls beyond the tutorial, driven through python-linstor 1.29.1 against a Ferrite
controller with real satellites: the size queries Proxmox and Kubernetes use (query-size-info,
query-all-size-info, query-max-volume-size), the space report, the key-value store (with
python-linstor's KV), node and resource connections, wait-sync, LINSTOR's answers to deleting what does not
exist and to a group naming a pool no node has yet, and 501 for calls Ferrite does not serve.

Started by crates/testkit/tests/compat_python.rs. Exit status 0 means every step passed.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

import linstor
from linstor import Linstor

WAIT = 60.0
WARN_NOT_FOUND = 3000


def check(replies, what):
    errors = [r for r in replies if r.is_error()]
    assert not errors, "%s failed: %s" % (what, "; ".join(str(e) for e in errors))
    return replies


def wait_for(what, predicate, timeout=WAIT):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.2)


def raw(base, method, path, body=None):
    """A request as the Proxmox plugin and golinstor send it: status and parsed JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--controller", required=True, help="e.g. linstor://127.0.0.1:3370")
    parser.add_argument("--node", action="append", required=True, help="name=ip:port")
    parser.add_argument("--pool-dir", action="append", required=True, help="name=/directory")
    args = parser.parse_args()
    nodes = dict(n.split("=", 1) for n in args.node)
    pool_dirs = dict(p.split("=", 1) for p in args.pool_dir)
    names = sorted(nodes)
    base = args.controller.replace("linstor://", "http://")

    lin = Linstor(args.controller)
    lin.connect()
    for name in names:
        ip, port = nodes[name].rsplit(":", 1)
        check(lin.node_create(name, "combined", ip, port=int(port)), "node create " + name)
    wait_for("ONLINE nodes", lambda: all(
        n.connection_status == "ONLINE" for n in lin.node_list_raise().nodes))
    for name in names:
        check(lin.storage_pool_create(name, "pool_ssd", "FILE_THIN", pool_dirs[name]), "pool " + name)
    wait_for("pool capacities", lambda: all(
        p.free_space is not None and p.free_space.total_capacity > 0
        for p in lin.storage_pool_list_raise().storage_pools if p.name == "pool_ssd"))

    # A group may name a pool no node has yet: created, with a warning.
    replies = check(lin.resource_group_create("later", storage_pool=["pool_nvme"]), "group on a missing pool")
    assert any(r.is_warning() and r.ret_code & 0x7FFF == WARN_NOT_FOUND for r in replies), [str(r) for r in replies]
    # Setting properties answers the keys set before "modified".
    replies = check(lin.resource_group_modify("later", property_dict={"Aux/a": "1"}), "group modify")
    assert replies[0].message == "Successfully set property key(s): Aux/a", [str(r) for r in replies]

    check(lin.resource_group_create("sized", place_count=2, storage_pool=["pool_ssd"]), "group create")
    check(lin.volume_group_create("sized"), "volume group create")
    group = [g for g in lin.resource_group_list_raise().resource_groups if g.name == "sized"][0]
    assert group.select_filter.storage_pool == "pool_ssd", group.select_filter.data_v1 if hasattr(group.select_filter, "data_v1") else group

    # linstor resource-group query-size-info sized
    info = lin.resource_group_query_size_info("sized")
    space = info.space_info
    assert space.max_vlm_size_in_kib > 0, space.max_vlm_size_in_kib
    assert space.capacity_in_kib >= space.available_size_in_kib >= space.max_vlm_size_in_kib, \
        (space.capacity_in_kib, space.available_size_in_kib, space.max_vlm_size_in_kib)
    assert len(space.next_spawn_result) == 2, space.next_spawn_result
    assert {r.stor_pool_name for r in space.next_spawn_result} == {"pool_ssd"}
    assert all(r.node_name in names for r in space.next_spawn_result)
    # A place count no cluster of three reaches: nothing fits, and the reports say why.
    info = lin.resource_group_query_size_info("sized", place_count=4)
    assert info.space_info.max_vlm_size_in_kib == 0 and info.reports, info.space_info
    print("query-size-info: max %d KiB, available %d KiB, capacity %d KiB" % (
        space.max_vlm_size_in_kib, space.available_size_in_kib, space.capacity_in_kib))

    # Proxmox's storage status: every group at once.
    status, answer = raw(base, "POST", "/v1/queries/resource-groups/query-all-size-info", {})
    assert status == 200, answer
    assert set(answer["result"]) >= {"sized", "later", "DfltRscGrp"}, answer
    assert answer["result"]["sized"]["space_info"]["capacity_in_kib"] == space.capacity_in_kib, answer
    assert answer["result"]["later"]["space_info"]["max_vlm_size_in_kib"] == 0, answer

    # linstor resource-group query-max-volume-size sized
    sizes = lin.resource_group_qmvs("sized")[0]
    assert [c.storage_pool for c in sizes.candidates] == ["pool_ssd"], sizes.candidates
    assert sizes.candidates[0].max_volume_size == space.max_vlm_size_in_kib
    assert len(sizes.candidates[0].node_names) == 2 and sizes.candidates[0].all_thin

    # linstor space-reporting query
    report = lin.space_reporting_query()[0].report
    assert "pool_ssd" in report and "FILE_THIN" in report, report

    # The key-value store, as python-linstor's KV and the raw calls use it.
    check(lin.keyvaluestore_modify("csi_kv", property_dict={"/ns/a": "1"}), "kv modify")
    kv = linstor.KV("csi_kv", namespace="/ns/", uri=args.controller)
    kv["b"] = "2"
    fresh = linstor.KV("csi_kv", namespace="/ns/", uri=args.controller)
    assert dict(fresh.items()) == {"a": "1", "b": "2"}, dict(fresh.items())
    assert "csi_kv" in lin.keyvaluestores().instances()
    assert lin.keyvaluestore_list("csi_kv").properties == {"ns/a": "1", "ns/b": "2"}
    status, answer = raw(base, "DELETE", "/v1/key-value-store/csi_kv")
    assert status == 200 and not any(e["ret_code"] < 0 and e["ret_code"] & 0xC000000000000000 == 0xC000000000000000 for e in answer), answer
    assert "csi_kv" not in lin.keyvaluestores().instances()

    # Node and resource connections.
    check(lin.resource_group_spawn("sized", "conn_res", ["64M"]), "spawn")
    # linstor resource-definition wait-sync: the replicas of a replicated definition reach
    # UpToDate (MIRROR here), and the sync status says so.
    assert lin.resource_dfn_wait_synced("conn_res", wait_interval=0.5, timeout=120)
    placed = sorted(r.node_name for r in lin.resource_list_raise(filter_by_resources=["conn_res"]).resources
                    if linstor.consts.FLAG_DISKLESS not in r.flags)
    a, b = placed[0], placed[1]
    check(lin.resource_conn_modify("conn_res", b, a, {"DrbdOptions/Net/max-buffers": "8000"}, []), "rc modify")
    connections = lin.resource_conn_list_raise("conn_res").resource_connections
    assert [(c.node_a, c.node_b) for c in connections] == [(a, b)], connections
    assert connections[0].properties == {"DrbdOptions/Net/max-buffers": "8000"}
    check(lin.node_conn_modify(names[0], names[1], {"Aux/link": "fast"}, []), "nc modify")
    listed = lin.node_conn_list_raise().node_connections
    assert [(c.node_a, c.node_b, c.properties) for c in listed] == [(names[0], names[1], {"Aux/link": "fast"})], listed

    # Deleting what does not exist: a warning, not an error.
    for what, replies in [
        ("resource definition", lin.resource_dfn_delete("no_such_res")),
        ("resource group", lin.resource_group_delete("no_such_group")),
        ("node", lin.node_delete("no-such-node")),
        ("storage pool", lin.storage_pool_delete(names[0], "no_such_pool")),
    ]:
        check(replies, "deleting a missing " + what)
        assert any(r.is_warning() and r.ret_code & 0x7FFF == WARN_NOT_FOUND for r in replies), [str(r) for r in replies]

    # Calls Ferrite does not serve: 501 with an ApiCallRc, never 404.
    for path in ["/v1/schedules", "/v1/remotes", "/v1/view/backup/queue", "/v1/encryption/passphrase"]:
        status, answer = raw(base, "GET", path)
        assert status == 501, (path, status, answer)
        assert answer[0]["ret_code"] < 0, answer

    print("parity: every step passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
