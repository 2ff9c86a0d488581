-- Ferrite controller store, version 2: a parent row can no longer take its children with it.
--
-- Version 1 declared the child tables' foreign keys `ON DELETE CASCADE`. Together with an
-- `INSERT OR REPLACE` update (which SQLite carries out as delete-then-insert) that made a
-- property change on a node, resource group or resource definition delete its storage pools,
-- volume groups, volume definitions and resources. Updates are upserts now, and deletes are
-- `RESTRICT`: the controller deletes every child row explicitly, and a change that would
-- orphan a child fails whole instead of deleting it.
--
-- SQLite cannot alter a foreign key, so each child table is rebuilt. The store runs this with
-- foreign key enforcement off and checks every key afterwards.

CREATE TABLE storage_pools_v2 (
    node TEXT NOT NULL REFERENCES nodes(name) ON DELETE RESTRICT,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (node, name)
) STRICT;
INSERT INTO storage_pools_v2 (node, name, data) SELECT node, name, data FROM storage_pools;
DROP TABLE storage_pools;
ALTER TABLE storage_pools_v2 RENAME TO storage_pools;

CREATE TABLE volume_groups_v2 (
    resource_group TEXT NOT NULL REFERENCES resource_groups(name) ON DELETE RESTRICT,
    volume_number  INTEGER NOT NULL,
    data           TEXT NOT NULL,
    PRIMARY KEY (resource_group, volume_number)
) STRICT;
INSERT INTO volume_groups_v2 (resource_group, volume_number, data)
    SELECT resource_group, volume_number, data FROM volume_groups;
DROP TABLE volume_groups;
ALTER TABLE volume_groups_v2 RENAME TO volume_groups;

CREATE TABLE volume_definitions_v2 (
    resource      TEXT NOT NULL REFERENCES resource_definitions(name) ON DELETE RESTRICT,
    volume_number INTEGER NOT NULL,
    data          TEXT NOT NULL,
    PRIMARY KEY (resource, volume_number)
) STRICT;
INSERT INTO volume_definitions_v2 (resource, volume_number, data)
    SELECT resource, volume_number, data FROM volume_definitions;
DROP TABLE volume_definitions;
ALTER TABLE volume_definitions_v2 RENAME TO volume_definitions;

CREATE TABLE resources_v2 (
    resource TEXT NOT NULL REFERENCES resource_definitions(name) ON DELETE RESTRICT,
    node     TEXT NOT NULL REFERENCES nodes(name) ON DELETE RESTRICT,
    data     TEXT NOT NULL,
    PRIMARY KEY (resource, node)
) STRICT;
INSERT INTO resources_v2 (resource, node, data) SELECT resource, node, data FROM resources;
DROP TABLE resources;
ALTER TABLE resources_v2 RENAME TO resources;

-- The restore epoch: raised by every restore of a backup, so satellites can tell a restored
-- store (whose revisions start again from the backup's) from a stale copy of it.
INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', '0');
