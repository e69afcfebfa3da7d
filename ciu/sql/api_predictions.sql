-- Stored forecasts as one JSON array (the newest run with forecasts of the variable, when one
-- is given, and its latest issue time, unless given). The WHERE filters are composed by the
-- caller from fixed fragments with bound parameters. Counts pass through ciu.api_public_count
-- for privacy.
WITH run AS (
    SELECT coalesce(%(run)s::bigint,
                    (SELECT max(p.run_id) FROM ciu.prediction p
                      WHERE p.scenario = %(scenario)s
                        AND (%(variable)s::text IS NULL
                             OR p.variable_id = (SELECT id FROM ciu.variable WHERE name = %(variable)s)))) AS id
), issue AS (
    SELECT r.id AS run_id,
           coalesce(%(issued)s::timestamptz,
                    (SELECT max(issued_at) FROM ciu.prediction p WHERE p.run_id = r.id AND p.scenario = %(scenario)s))
               AS issued_at
      FROM run r
), rows AS (
    SELECT p.run_id, u.code, u.level, v.name AS variable, p.issued_at, p.horizon, p.time,
           CASE WHEN v.rollup = 'sum' AND v.space = 'social'
                THEN ciu.api_public_count(p.value, %(exact)s, %(k)s, %(epsilon)s) ELSE p.value END AS value,
           p.risk
      FROM issue i
      JOIN ciu.prediction p ON p.run_id = i.run_id AND p.issued_at = i.issued_at AND p.scenario = %(scenario)s
      JOIN ciu.unit u ON u.id = p.unit_id
      JOIN ciu.variable v ON v.id = p.variable_id
     WHERE {filters}
     ORDER BY u.code, v.name, p.horizon
     LIMIT %(limit)s OFFSET %(offset)s
)
SELECT coalesce(json_agg(json_build_object(
           'run_id', run_id, 'code', code, 'level', level, 'variable', variable, 'issued_at', issued_at,
           'horizon', horizon, 'time', time, 'value', value, 'risk', risk)), '[]'::json)::text,
       count(*)
  FROM rows
