-- Ferrite controller store, version 1.
--
-- Every object of the cluster graph is a row; `data` holds the object as JSON (inspect with
-- `sqlite3 ferrite.db "select name, data from nodes"`). Parent keys are real columns with
-- foreign keys, so an orphan cannot be written. Keys are the objects' upper-cased names
-- (LINSTOR names are case-insensitive); the JSON keeps the spelling users gave.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE controller_props (
    key  TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) STRICT;

CREATE TABLE nodes (
    name TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) STRICT;

CREATE TABLE storage_pools (
    node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (node, name)
) STRICT;

CREATE TABLE resource_groups (
    name TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) STRICT;

CREATE TABLE volume_groups (
    resource_group TEXT NOT NULL REFERENCES resource_groups(name) ON DELETE CASCADE,
    volume_number  INTEGER NOT NULL,
    data           TEXT NOT NULL,
    PRIMARY KEY (resource_group, volume_number)
) STRICT;

CREATE TABLE resource_definitions (
    name TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) STRICT;

CREATE TABLE volume_definitions (
    resource      TEXT NOT NULL REFERENCES resource_definitions(name) ON DELETE CASCADE,
    volume_number INTEGER NOT NULL,
    data          TEXT NOT NULL,
    PRIMARY KEY (resource, volume_number)
) STRICT;

CREATE TABLE resources (
    resource TEXT NOT NULL REFERENCES resource_definitions(name) ON DELETE CASCADE,
    node     TEXT NOT NULL REFERENCES nodes(name),
    data     TEXT NOT NULL,
    PRIMARY KEY (resource, node)
) STRICT;

CREATE TABLE error_reports (
    id   TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) STRICT;
