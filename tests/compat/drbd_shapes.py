#!/usr/bin/env python3
"""Reads Ferrite's answers for a replicated (MIRROR) resource, and for a definition created
without a layer list that is not placed yet (no layers, as LINSTOR answers), with
python-linstor 1.29.1's response classes, through every accessor the `linstor` client's
`resource list`, `volume list`, `resource-definition list`, `volume-definition list` and `-m`
(v0 and v1) output use.

Started by a unit test of the controller (`app::views`) with two files: the answer of
`GET /v1/view/resources` and of `GET /v1/resource-definitions?with_volume_definitions=true`.
python-linstor reads many fields without a default, so a missing one raises here as it would
crash the client. Exit status 0 means every read succeeded and matched.
"""

import json
import sys

from linstor.responses import ResourceDefinitionResponse, ResourceResponse


def main():
    resources = ResourceResponse(json.load(open(sys.argv[1])))
    definitions = ResourceDefinitionResponse(json.load(open(sys.argv[2])))
    seen_in_use = False
    for resource in resources.resources:
        layer = resource.layer_data
        assert layer.layer_stack == ["DRBD", "STORAGE"], layer.layer_stack
        drbd = layer.drbd_resource
        assert isinstance(drbd.node_id, int) and 0 <= drbd.node_id <= 31
        assert all(isinstance(p, int) for p in drbd.tcp_ports)
        for peer, connection in drbd.connections.items():
            assert isinstance(connection.connected, bool), peer
            assert connection.connected or connection.message, peer
        assert resource.create_datetime is not None
        for volume in resource.volumes:
            data = volume.drbd_data
            assert data is not None, "no DRBD layer data"
            definition = data.drbd_volume_definition
            assert isinstance(definition.minor, int) and definition.minor >= 1000
            assert definition.number == volume.number
            assert definition.resource_name_suffix == ""
            # Read without a default by python-linstor.
            assert isinstance(data.device_path, str)
            assert isinstance(data.allocated_size, int)
            assert isinstance(volume.usable_size, int)
            assert volume.storage_data is not None
            assert isinstance(volume.state.disk_state, str)
            for peer, state in volume.state.replication_states.items():
                assert isinstance(state.replication_state, str), peer
            volume.data_v0
        if "DISKLESS" not in resource.flags:
            assert all(v.drbd_data.meta_disk == "internal" for v in resource.volumes)
        resource.data_v0
    for state in resources.resource_states:
        seen_in_use |= state.in_use is True
        state.data_v0
    assert seen_in_use, "no resource in use"
    resources.data_v0
    seen_default = False
    for definition in definitions.resource_definitions:
        if not definition.layer_data:
            # Created without a layer list and not placed yet: LINSTOR answers no layers.
            seen_default = True
            assert definition.drbd_data is None
            for volume in definition.volume_definitions:
                assert volume.drbd_data is None
                volume.data_v0
            continue
        assert [l.type for l in definition.layer_data] == ["DRBD", "STORAGE"]
        drbd = definition.drbd_data
        assert len(drbd.secret) == 20 and drbd.peer_slots == 7
        for volume in definition.volume_definitions:
            assert volume.drbd_data.minor >= 1000
            volume.data_v0
    assert seen_default, "no definition without layers"
    definitions.data_v0
    print("python-linstor read every answer")


if __name__ == "__main__":
    main()
