-- Variables and their observations over time (long format, partitioned by month),
-- with set-based referential checks and the extent of every series.
-- The current definition, in one place: a test checks that a fresh migration
-- (ciu/migrations) builds exactly this schema.

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
