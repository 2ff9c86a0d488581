-- Ferrite controller store, version 3: node connections, resource connections and the
-- key-value store, each a property container of its own.
--
-- A connection's key is its two nodes in sorted order (the controller sorts them), so a
-- connection is stored once whichever way round a client names it. A resource connection
-- belongs to the two resources it connects: they cannot be deleted while it exists, and the
-- controller deletes it with the first of them.

CREATE TABLE key_value_stores (
    name TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) STRICT;

CREATE TABLE node_connections (
    node_a TEXT NOT NULL REFERENCES nodes(name) ON DELETE RESTRICT,
    node_b TEXT NOT NULL REFERENCES nodes(name) ON DELETE RESTRICT,
    data   TEXT NOT NULL,
    PRIMARY KEY (node_a, node_b)
) STRICT;

CREATE TABLE resource_connections (
    resource TEXT NOT NULL,
    node_a   TEXT NOT NULL,
    node_b   TEXT NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (resource, node_a, node_b),
    FOREIGN KEY (resource, node_a) REFERENCES resources(resource, node) ON DELETE RESTRICT,
    FOREIGN KEY (resource, node_b) REFERENCES resources(resource, node) ON DELETE RESTRICT
) STRICT;
