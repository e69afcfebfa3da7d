-- The unit tree: the ordered levels, the sources every record points at, the
-- units, and the tree invariant the database enforces on every statement.
-- The current definition, in one place: a test checks that a fresh migration
-- (ciu/migrations) builds exactly this schema.

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE ciu.level (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    rank integer NOT NULL UNIQUE CHECK (rank >= 0),  -- 0 is the bottom level
    kind text NOT NULL DEFAULT 'area' CHECK (kind IN ('storey', 'structure', 'area')),
    prefix text NOT NULL DEFAULT '' CHECK (prefix ~ '^[a-z0-9_]*$')
);
COMMENT ON TABLE ciu.level IS 'The ordered list of hierarchy levels; rank 0 is the bottom (e.g. floor).';
COMMENT ON COLUMN ciu.level.kind IS 'storey: volumes stacked in a structure (floors); structure: extruded footprints placed by a point (buildings); area: placed by overlap.';
COMMENT ON COLUMN ciu.level.prefix IS 'Prefix of the local keys generated for units of this level (e.g. b for buildings).';

CREATE TABLE ciu.source (
    id bigserial PRIMARY KEY,
    uri text NOT NULL,
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    loader text NOT NULL,
    loader_version text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    rows bigint NOT NULL DEFAULT 0 CHECK (rows >= 0),
    params jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX source_identity ON ciu.source (sha256, loader, (params::text));
COMMENT ON TABLE ciu.source IS 'Provenance: every loaded unit and observation points at the source it came from.';

CREATE TABLE ciu.unit (
    id bigserial PRIMARY KEY,
    code text NOT NULL CONSTRAINT unit_code_format CHECK (code ~ '^[a-z0-9_]+(/[a-z0-9_]+)*$'),
    level text NOT NULL,
    parent_id bigint,
    name text,
    geom geometry(Geometry, 4326) NOT NULL,
    area_m2 double precision,
    z_min double precision,
    z_max double precision,
    attrs jsonb NOT NULL DEFAULT '{}',
    restricted jsonb NOT NULL DEFAULT '{}',
    source_id bigint,
    CONSTRAINT unit_geom_not_empty CHECK (NOT ST_IsEmpty(geom)),
    CONSTRAINT unit_z_range CHECK (z_min IS NULL OR z_max IS NULL OR z_min <= z_max),
    CONSTRAINT unit_attrs_object CHECK (jsonb_typeof(attrs) = 'object' AND jsonb_typeof(restricted) = 'object')
);
-- The code is the unit's materialised path: subtree = the code and every code
-- that starts with it and a slash (text_pattern_ops serves those prefix scans).
CREATE UNIQUE INDEX unit_code ON ciu.unit (code text_pattern_ops);
CREATE INDEX unit_geom_gist ON ciu.unit USING gist (geom);
CREATE INDEX unit_parent ON ciu.unit (parent_id);
CREATE INDEX unit_level ON ciu.unit (level);
COMMENT ON COLUMN ciu.unit.code IS 'Stable URL-safe hierarchical code: the parent''s code, a slash, a local key.';
COMMENT ON COLUMN ciu.unit.area_m2 IS 'Area on the ellipsoid (m²): given by the loader, or computed by the database when missing.';
COMMENT ON COLUMN ciu.unit.restricted IS 'Attributes visible only to roles allowed to see restricted data.';

-- The tree invariant: every unit but a root of the top level has exactly one
-- parent exactly one level up, and its code extends the parent's code. Level
-- and source must exist. Checked per statement over the rows it touched:
-- set-based, so bulk loads pay one join instead of a trigger per row.

-- Which rule a unit breaks (NULL when none), from the unit, its parent, its
-- level's rank, its parent's rank, the top rank and whether its source exists.
CREATE FUNCTION ciu.tree_fault(code text, rank integer, parent_id bigint, parent_code text, parent_rank integer,
                               top integer, source_id bigint, source_found bigint)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN rank IS NULL THEN 'level'
        WHEN source_id IS NOT NULL AND source_found IS NULL THEN 'source'
        WHEN parent_id IS NULL THEN CASE WHEN rank <> top THEN 'root' END
        WHEN parent_code IS NULL THEN 'parent'
        WHEN parent_rank IS DISTINCT FROM rank + 1 THEN 'parent level'
        WHEN NOT (starts_with(code, parent_code) AND substr(code, length(parent_code) + 1, 1) = '/') THEN 'code'
    END
$$;

CREATE FUNCTION ciu.raise_tree_fault(fault text, code text, level text, parent_id bigint, parent_code text,
                                     parent_level text, source_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF fault = 'level' THEN
        RAISE EXCEPTION 'unit % has unknown level %', code, level
            USING ERRCODE = 'check_violation', COLUMN = 'level', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'source' THEN
        RAISE EXCEPTION 'unit % refers to source % that does not exist', code, source_id
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'source_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'root' THEN
        RAISE EXCEPTION 'unit % (level %) has no parent; only % units may be roots',
            code, level, (SELECT name FROM ciu.level ORDER BY rank DESC LIMIT 1)
            USING ERRCODE = 'check_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'parent' THEN
        RAISE EXCEPTION 'unit % has parent id % that does not exist', code, parent_id
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'parent level' THEN
        RAISE EXCEPTION 'unit % (level %) has parent % at level %; its parent must be one level up',
            code, level, parent_code, parent_level
            USING ERRCODE = 'check_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSE
        RAISE EXCEPTION 'unit code % does not extend its parent''s code %', code, parent_code
            USING ERRCODE = 'check_violation', COLUMN = 'code', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    END IF;
END;
$$;

-- The units of ``units`` (a relation of ciu.unit rows: a table name or a
-- parenthesised query) that break a rule, with the rule (see ciu.tree_fault).
-- No LIMIT: with one the planner expects to stop early and looks every parent
-- up by index; without, a bulk load gets hash joins. Callers take the first.
CREATE FUNCTION ciu.tree_fault_query(units text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT format($q$
        SELECT f.fault, u.code, u.level, u.parent_id, p.code AS parent_code, p.level AS parent_level, u.source_id
          FROM %s u
          LEFT JOIN ciu.level lu ON lu.name = u.level
          LEFT JOIN ciu.unit p ON p.id = u.parent_id
          LEFT JOIN ciu.level lp ON lp.name = p.level
          LEFT JOIN ciu.source s ON s.id = u.source_id
         CROSS JOIN LATERAL (SELECT ciu.tree_fault(u.code, lu.rank, u.parent_id, p.code, lp.rank,
                                                   (SELECT max(rank) FROM ciu.level), u.source_id, s.id) AS fault) f
         WHERE f.fault IS NOT NULL$q$, units)
$$;

-- Updates: the units given by id (the updated ones and their children).
CREATE FUNCTION ciu.check_tree(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    EXECUTE ciu.tree_fault_query('(SELECT u.* FROM unnest($1) AS t(id) JOIN ciu.unit u ON u.id = t.id)')
       INTO bad USING ids;
    IF bad.fault IS NOT NULL THEN
        PERFORM ciu.raise_tree_fault(bad.fault, bad.code, bad.level, bad.parent_id, bad.parent_code,
                                     bad.parent_level, bad.source_id);
    END IF;
END;
$$;

-- Inserts: the statement's new rows, straight from the transition table.
CREATE FUNCTION ciu.unit_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    EXECUTE ciu.tree_fault_query('new_units') INTO bad;
    IF bad.fault IS NOT NULL THEN
        PERFORM ciu.raise_tree_fault(bad.fault, bad.code, bad.level, bad.parent_id, bad.parent_code,
                                     bad.parent_level, bad.source_id);
    END IF;
    IF EXISTS (SELECT 1 FROM new_units WHERE area_m2 IS NULL) THEN
        UPDATE ciu.unit u SET area_m2 = ST_Area(u.geom::geography)
          FROM new_units n WHERE u.id = n.id AND n.area_m2 IS NULL;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION ciu.unit_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the updated units and the children of the updated units
    PERFORM ciu.check_tree(ARRAY(
        SELECT id FROM new_units
        UNION
        SELECT c.id FROM ciu.unit c JOIN new_units n ON c.parent_id = n.id));
    -- a moved outline gets its area again (unless the writer gave the new area)
    IF EXISTS (SELECT 1 FROM new_units n JOIN old_units o ON o.id = n.id
                WHERE n.area_m2 IS NULL
                   OR (NOT ST_OrderingEquals(n.geom, o.geom) AND n.area_m2 IS NOT DISTINCT FROM o.area_m2)) THEN
        UPDATE ciu.unit u SET area_m2 = ST_Area(u.geom::geography)
          FROM new_units n JOIN old_units o ON o.id = n.id
         WHERE u.id = n.id
           AND (n.area_m2 IS NULL
                OR (NOT ST_OrderingEquals(n.geom, o.geom) AND n.area_m2 IS NOT DISTINCT FROM o.area_m2));
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION ciu.unit_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan record;
BEGIN
    SELECT c.code, d.code AS parent_code INTO orphan
      FROM ciu.unit c JOIN old_units d ON c.parent_id = d.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot delete unit %: unit % is below it (delete the whole subtree)',
            orphan.parent_code, orphan.code
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = orphan.parent_code;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER unit_after_insert AFTER INSERT ON ciu.unit
    REFERENCING NEW TABLE AS new_units FOR EACH STATEMENT EXECUTE FUNCTION ciu.unit_after_insert();
CREATE TRIGGER unit_after_update AFTER UPDATE ON ciu.unit
    REFERENCING OLD TABLE AS old_units NEW TABLE AS new_units
    FOR EACH STATEMENT EXECUTE FUNCTION ciu.unit_after_update();
CREATE TRIGGER unit_after_delete AFTER DELETE ON ciu.unit
    REFERENCING OLD TABLE AS old_units FOR EACH STATEMENT EXECUTE FUNCTION ciu.unit_after_delete();

-- Levels are configuration: they may change only while the twin holds no units.
CREATE FUNCTION ciu.level_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ciu.unit) THEN
        RAISE EXCEPTION 'levels cannot change while the twin holds units'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'level_frozen', TABLE = 'level';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER level_guard AFTER INSERT OR UPDATE OR DELETE ON ciu.level
    FOR EACH STATEMENT EXECUTE FUNCTION ciu.level_guard();
