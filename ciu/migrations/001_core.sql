-- CIU Twin core schema: levels, units (the hierarchy), variables, sources,
-- observations, model runs, predictions and alerts.

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE ciu.level (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    rank integer NOT NULL UNIQUE CHECK (rank >= 0)   -- 0 is the bottom level
);
COMMENT ON TABLE ciu.level IS 'The ordered list of hierarchy levels; rank 0 is the bottom (e.g. floor).';

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
CREATE FUNCTION ciu.check_tree(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    top integer;
BEGIN
    SELECT max(rank) INTO top FROM ciu.level;
    SELECT u.code, u.level, lu.rank, u.parent_id, p.code AS parent_code, p.level AS parent_level,
           lp.rank AS parent_rank, u.source_id, s.id AS source_found
      INTO bad
      FROM unnest(ids) AS t(id)
      JOIN ciu.unit u ON u.id = t.id
      LEFT JOIN ciu.level lu ON lu.name = u.level
      LEFT JOIN ciu.unit p ON p.id = u.parent_id
      LEFT JOIN ciu.level lp ON lp.name = p.level
      LEFT JOIN ciu.source s ON s.id = u.source_id
     WHERE lu.rank IS NULL
        OR (u.parent_id IS NULL AND lu.rank <> top)
        OR (u.parent_id IS NOT NULL AND lp.rank IS DISTINCT FROM lu.rank + 1)
        OR (u.parent_id IS NOT NULL AND left(u.code, length(p.code) + 1) <> p.code || '/')
        OR (u.source_id IS NOT NULL AND s.id IS NULL)
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF bad.rank IS NULL THEN
        RAISE EXCEPTION 'unit % has unknown level %', bad.code, bad.level
            USING ERRCODE = 'check_violation', COLUMN = 'level', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = bad.code;
    ELSIF bad.source_id IS NOT NULL AND bad.source_found IS NULL THEN
        RAISE EXCEPTION 'unit % refers to source % that does not exist', bad.code, bad.source_id
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'source_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = bad.code;
    ELSIF bad.parent_id IS NULL THEN
        RAISE EXCEPTION 'unit % (level %) has no parent; only % units may be roots',
            bad.code, bad.level, (SELECT name FROM ciu.level WHERE rank = top)
            USING ERRCODE = 'check_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = bad.code;
    ELSIF bad.parent_code IS NULL THEN
        RAISE EXCEPTION 'unit % has parent id % that does not exist', bad.code, bad.parent_id
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = bad.code;
    ELSIF bad.parent_rank IS DISTINCT FROM bad.rank + 1 THEN
        RAISE EXCEPTION 'unit % (level %) has parent % at level %; its parent must be one level up',
            bad.code, bad.level, bad.parent_code, bad.parent_level
            USING ERRCODE = 'check_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = bad.code;
    ELSE
        RAISE EXCEPTION 'unit code % does not extend its parent''s code %', bad.code, bad.parent_code
            USING ERRCODE = 'check_violation', COLUMN = 'code', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = bad.code;
    END IF;
END;
$$;

CREATE FUNCTION ciu.unit_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ciu.check_tree(ARRAY(SELECT id FROM new_units));
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

CREATE TABLE ciu.variable (
    id smallserial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    unit_of_measure text NOT NULL,
    space text NOT NULL CHECK (space IN ('physical', 'social', 'information', 'external')),
    scope text NOT NULL DEFAULT 'public' CHECK (scope IN ('public', 'restricted')),
    rollup text NOT NULL CHECK (rollup IN ('sum', 'mean', 'area_weighted_mean', 'max', 'min')),
    resample text NOT NULL DEFAULT 'mean' CHECK (resample IN ('sum', 'mean', 'max', 'min')),
    description text NOT NULL DEFAULT ''
);
COMMENT ON COLUMN ciu.variable.rollup IS 'How a parent''s value is computed from its children''s values.';
COMMENT ON COLUMN ciu.variable.resample IS 'How values are aggregated over time to a coarser frequency.';

CREATE TABLE ciu.observation (
    unit_id bigint NOT NULL,
    variable_id smallint NOT NULL,
    time timestamptz NOT NULL,
    value double precision NOT NULL,
    source_id bigint,
    CONSTRAINT observation_finite CHECK (value <> 'NaN'::float8 AND value < 'Infinity'::float8 AND value > '-Infinity'::float8),
    PRIMARY KEY (variable_id, unit_id, time)
) PARTITION BY RANGE (time);
CREATE TABLE ciu.observation_default PARTITION OF ciu.observation DEFAULT;
CREATE INDEX observation_time_brin ON ciu.observation USING brin (time);
COMMENT ON TABLE ciu.observation IS 'Long-format time series, partitioned by month (partitions made on load).';

-- Referential integrity of observations, checked per statement over all the rows
-- it wrote (per-row foreign-key triggers make bulk loads ten times slower).
CREATE FUNCTION ciu.observation_refs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.unit_id, n.variable_id INTO bad
      FROM new_obs n
     WHERE NOT EXISTS (SELECT 1 FROM ciu.unit u WHERE u.id = n.unit_id)
        OR NOT EXISTS (SELECT 1 FROM ciu.variable v WHERE v.id = n.variable_id)
        OR (n.source_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ciu.source s WHERE s.id = n.source_id))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'observation refers to unit id %, variable id % that do not exist', bad.unit_id, bad.variable_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'observation_refs', TABLE = 'observation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER observation_refs_insert AFTER INSERT ON ciu.observation
    REFERENCING NEW TABLE AS new_obs FOR EACH STATEMENT EXECUTE FUNCTION ciu.observation_refs();
CREATE TRIGGER observation_refs_update AFTER UPDATE ON ciu.observation
    REFERENCING NEW TABLE AS new_obs FOR EACH STATEMENT EXECUTE FUNCTION ciu.observation_refs();

-- Deleting units or variables deletes their observations.
CREATE FUNCTION ciu.unit_delete_observations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ciu.observation o USING old_units d WHERE o.unit_id = d.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER unit_delete_observations AFTER DELETE ON ciu.unit
    REFERENCING OLD TABLE AS old_units FOR EACH STATEMENT EXECUTE FUNCTION ciu.unit_delete_observations();
CREATE FUNCTION ciu.variable_delete_observations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ciu.observation o USING old_vars d WHERE o.variable_id = d.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER variable_delete_observations AFTER DELETE ON ciu.variable
    REFERENCING OLD TABLE AS old_vars FOR EACH STATEMENT EXECUTE FUNCTION ciu.variable_delete_observations();

CREATE TABLE ciu.model_run (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL DEFAULT 'tower',
    created_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'trained' CHECK (status IN ('training', 'trained', 'failed')),
    params jsonb NOT NULL DEFAULT '{}',
    data_hash text,
    code_version text,
    metrics jsonb NOT NULL DEFAULT '{}',
    checkpoint text
);

CREATE TABLE ciu.prediction (
    run_id bigint NOT NULL REFERENCES ciu.model_run (id) ON DELETE CASCADE,
    unit_id bigint NOT NULL REFERENCES ciu.unit (id) ON DELETE CASCADE,
    variable_id smallint NOT NULL REFERENCES ciu.variable (id) ON DELETE CASCADE,
    issued_at timestamptz NOT NULL,
    horizon integer NOT NULL CHECK (horizon >= 1),
    time timestamptz NOT NULL,
    value double precision NOT NULL,
    risk double precision CHECK (risk IS NULL OR (risk >= 0 AND risk <= 1)),
    scenario text NOT NULL DEFAULT 'baseline',
    PRIMARY KEY (run_id, scenario, variable_id, unit_id, issued_at, horizon)
);
CREATE INDEX prediction_unit_time ON ciu.prediction (unit_id, time);
CREATE INDEX prediction_time ON ciu.prediction (time);

CREATE TABLE ciu.alert (
    id bigserial PRIMARY KEY,
    run_id bigint REFERENCES ciu.model_run (id) ON DELETE CASCADE,
    unit_id bigint NOT NULL REFERENCES ciu.unit (id) ON DELETE CASCADE,
    kind text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    time timestamptz NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    risk double precision,
    threshold double precision,
    message text NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    UNIQUE (run_id, unit_id, kind, time)
);
CREATE INDEX alert_open ON ciu.alert (time) WHERE acknowledged_at IS NULL;

-- Per variable and level: how many observations and their time range. Kept by
-- the loaders; read by roll-ups (which level is observed) and `ciu info`.
CREATE TABLE ciu.series_extent (
    variable_id smallint NOT NULL REFERENCES ciu.variable (id) ON DELETE CASCADE,
    level text NOT NULL REFERENCES ciu.level (name),
    n bigint NOT NULL,
    tmin timestamptz,
    tmax timestamptz,
    PRIMARY KEY (variable_id, level)
);

CREATE FUNCTION ciu.refresh_series_extent() RETURNS void LANGUAGE sql AS $$
    DELETE FROM ciu.series_extent;
    INSERT INTO ciu.series_extent (variable_id, level, n, tmin, tmax)
    SELECT o.variable_id, u.level, count(*), min(o.time), max(o.time)
      FROM ciu.observation o JOIN ciu.unit u ON u.id = o.unit_id
     GROUP BY 1, 2;
$$;
