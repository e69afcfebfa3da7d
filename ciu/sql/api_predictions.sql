-- Stored forecasts as one JSON array (the newest run with forecasts of the variable, when one
-- is given, and its latest issue time, unless given). The WHERE filters are composed by the
-- caller from fixed fragments with bound parameters. Counts, and their quantiles, pass through
-- ciu.api_public_count for privacy; a quantile is withheld wherever its value is, so no
-- quantile tells what a withheld count was. Noise is drawn for each quantile, which can cross
-- them: the published ones are put back in order (what was withheld stays withheld).
WITH issue AS (
    -- an unknown variable name matches no run (-1), no name any run (NULL)
    SELECT n.run_id, coalesce(%(issued)s::timestamptz, n.issued_at) AS issued_at
      FROM ciu.newest_issue(%(scenario)s,
                            CASE WHEN %(variable)s::text IS NOT NULL
                                 THEN coalesce((SELECT id FROM ciu.variable WHERE name = %(variable)s), -1) END::smallint,
                            %(run)s::bigint) AS n
), rows AS (
    SELECT p.run_id, u.code, u.level, v.name AS variable, p.issued_at, p.horizon, p.time, p.value, p.risk,
           p.q10, p.q50, p.q90, ciu.is_count(v.rollup, v.space) AS counted
      FROM issue i
      JOIN ciu.prediction p ON p.run_id = i.run_id AND p.issued_at = i.issued_at AND p.scenario = %(scenario)s
      JOIN ciu.unit u ON u.id = p.unit_id
      JOIN ciu.variable v ON v.id = p.variable_id
     WHERE {filters}
     ORDER BY u.code, v.name, p.horizon
     LIMIT %(limit)s OFFSET %(offset)s
), published AS (
    -- drawn once per row: a query that calls a volatile function is not folded into the next one
    SELECT run_id, code, level, variable, issued_at, horizon, time, risk,
           CASE WHEN counted THEN ciu.api_public_count(value, %(exact)s, %(k)s, %(epsilon)s) ELSE value END AS value,
           CASE WHEN counted THEN ciu.api_public_count(q10, %(exact)s, %(k)s, %(epsilon)s) ELSE q10 END AS a,
           CASE WHEN counted THEN ciu.api_public_count(q50, %(exact)s, %(k)s, %(epsilon)s) ELSE q50 END AS b,
           CASE WHEN counted THEN ciu.api_public_count(q90, %(exact)s, %(k)s, %(epsilon)s) ELSE q90 END AS c
      FROM rows
), ordered AS (
    -- a, b, c: the published q10, q50, q90; the ones not withheld, sorted, back in their places
    SELECT run_id, code, level, variable, issued_at, horizon, time, value, risk,
           CASE WHEN value IS NOT NULL AND a IS NOT NULL THEN least(a, b, c) END AS q10,
           CASE WHEN value IS NULL OR b IS NULL THEN NULL
                WHEN a IS NULL THEN least(b, c)
                WHEN c IS NULL THEN greatest(a, b)
                ELSE greatest(least(a, b), least(greatest(a, b), c)) END AS q50,
           CASE WHEN value IS NOT NULL AND c IS NOT NULL THEN greatest(a, b, c) END AS q90
      FROM published
)
SELECT coalesce(json_agg(json_build_object(
           'run_id', run_id, 'code', code, 'level', level, 'variable', variable, 'issued_at', issued_at,
           'horizon', horizon, 'time', time, 'value', value, 'risk', risk, 'q10', q10, 'q50', q50, 'q90', q90)
           ORDER BY code, variable, horizon), '[]'::json)::text,
       count(*)
  FROM ordered
