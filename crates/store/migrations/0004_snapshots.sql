-- Ferrite controller store: snapshots.
--
-- A snapshot definition belongs to a resource definition (a resource definition with snapshots
-- cannot be deleted, as in LINSTOR); a snapshot is a snapshot definition taken on one node.
-- Their volume definitions and volumes are part of the rows' JSON. Both keys restrict deletes,
-- like every other parent key of the store (version 2).

CREATE TABLE snapshot_definitions (
    resource TEXT NOT NULL REFERENCES resource_definitions(name) ON DELETE RESTRICT,
    name     TEXT NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (resource, name)
) STRICT;

CREATE TABLE snapshots (
    resource TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    node     TEXT NOT NULL REFERENCES nodes(name) ON DELETE RESTRICT,
    data     TEXT NOT NULL,
    PRIMARY KEY (resource, snapshot, node),
    FOREIGN KEY (resource, snapshot)
        REFERENCES snapshot_definitions(resource, name) ON DELETE RESTRICT
) STRICT;
