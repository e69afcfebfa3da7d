-- Forecasts: model runs, the stored predictions (point, quantiles, risk) and alerts.
-- The current definition, in one place: a test checks that a fresh migration
-- (ciu/migrations) builds exactly this schema.

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
    -- the 10th, 50th and 90th percentiles beside the point forecast; NULL for
    -- forecasts stored without them (earlier runs, forecasters that give none)
    q10 double precision,
    q50 double precision,
    q90 double precision,
    PRIMARY KEY (run_id, scenario, variable_id, unit_id, issued_at, horizon),
    CONSTRAINT prediction_quantiles_ordered
        CHECK (q10 IS NULL OR q50 IS NULL OR q90 IS NULL OR (q10 <= q50 AND q50 <= q90))
);
COMMENT ON COLUMN ciu.prediction.q10 IS 'The forecast''s 10th percentile (sample paths summed up the hierarchy).';
COMMENT ON COLUMN ciu.prediction.q90 IS 'The forecast''s 90th percentile; p10..p90 is the 80 % band.';
CREATE INDEX prediction_unit_time ON ciu.prediction (unit_id, time);
CREATE INDEX prediction_time ON ciu.prediction (time);
-- The API asks for the newest run's latest issue time on every forecast read.
CREATE INDEX prediction_run_issued ON ciu.prediction (run_id, scenario, issued_at);

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
    until timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    resolved_at timestamptz,
    resolved_by text,
    CONSTRAINT alert_span CHECK (until >= time)
);
COMMENT ON COLUMN ciu.alert.time IS 'First step of the episode.';
COMMENT ON COLUMN ciu.alert.until IS 'Last step of the episode.';
CREATE INDEX alert_live ON ciu.alert (unit_id, kind) WHERE state <> 'resolved';
CREATE INDEX alert_time ON ciu.alert (time DESC);

-- What happened to each alert episode, by whom: opened, extended by a newer forecast, acknowledged, resolved.
CREATE TABLE ciu.alert_history (
    id bigserial PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES ciu.alert (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL CHECK (event IN ('opened', 'extended', 'acknowledged', 'resolved')),
    by text,
    note text NOT NULL DEFAULT ''
);
CREATE INDEX alert_history_alert ON ciu.alert_history (alert_id, at);

-- The newest forecast issue of a scenario: the run given, else the newest run with
-- stored forecasts (of the variable when given), and that run's latest issue time.
-- The one definition of "the newest forecasts": the store and the API's queries call it.
CREATE FUNCTION ciu.newest_issue(of_scenario text, of_variable smallint DEFAULT NULL, of_run bigint DEFAULT NULL)
RETURNS TABLE (run_id bigint, issued_at timestamptz) LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT r.id, (SELECT max(p.issued_at) FROM ciu.prediction p WHERE p.run_id = r.id AND p.scenario = $1)
      FROM (SELECT coalesce($3, (SELECT max(p.run_id) FROM ciu.prediction p
                                  WHERE p.scenario = $1 AND ($2 IS NULL OR p.variable_id = $2))) AS id) AS r
     WHERE r.id IS NOT NULL
$$;
