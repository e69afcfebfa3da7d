-- Alerts are episodes: one row per unit, kind and run of consecutive alerted steps (time .. until),
-- with a state (open → acknowledged → resolved) and a history of what happened to it, by whom.
ALTER TABLE ciu.alert
    ADD COLUMN until timestamptz,
    ADD COLUMN state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolved_by text;
UPDATE ciu.alert SET until = time, state = CASE WHEN acknowledged_at IS NULL THEN 'open' ELSE 'acknowledged' END;
ALTER TABLE ciu.alert ALTER COLUMN until SET NOT NULL,
    ADD CONSTRAINT alert_span CHECK (until >= time),
    DROP CONSTRAINT alert_run_id_unit_id_kind_time_key;
COMMENT ON COLUMN ciu.alert.time IS 'First step of the episode.';
COMMENT ON COLUMN ciu.alert.until IS 'Last step of the episode.';
DROP INDEX ciu.alert_open;
CREATE INDEX alert_live ON ciu.alert (unit_id, kind) WHERE state <> 'resolved';
CREATE INDEX alert_time ON ciu.alert (time DESC);

CREATE TABLE ciu.alert_history (
    id bigserial PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES ciu.alert (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL CHECK (event IN ('opened', 'extended', 'acknowledged', 'resolved')),
    by text,
    note text NOT NULL DEFAULT ''
);
CREATE INDEX alert_history_alert ON ciu.alert_history (alert_id, at);
INSERT INTO ciu.alert_history (alert_id, at, event, by)
    SELECT id, issued_at, 'opened', NULL FROM ciu.alert;
INSERT INTO ciu.alert_history (alert_id, at, event, by)
    SELECT id, acknowledged_at, 'acknowledged', acknowledged_by FROM ciu.alert WHERE acknowledged_at IS NOT NULL;
