-- One Mapbox vector tile of the units of one level, with the current value of a
-- variable (its base-level observations at %(t)s aggregated over each unit's
-- subtree by the variable's roll-up rule) and the stored forecast at one horizon.
-- Restricted attributes are merged in only for the names in %(allowed)s ('*' = all).
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS box3857
), env4326 AS (
    SELECT box3857, ST_Transform(box3857, 4326) AS box4326 FROM env
), tile_units AS (
    SELECT u.id, u.code, u.name, u.level, u.area_m2, u.z_min, u.z_max,
           u.attrs || coalesce((SELECT jsonb_object_agg(r.key, r.value) FROM jsonb_each(u.restricted) r
                                 WHERE '*' = ANY(%(allowed)s::text[]) OR r.key = ANY(%(allowed)s::text[])),
                                '{}'::jsonb) AS attrs,
           ST_AsMVTGeom(ST_Transform(u.geom, 3857), e.box3857, 4096, 64, true) AS geom
      FROM ciu.unit u, env4326 e
     WHERE u.level = %(level)s AND u.geom && e.box4326
), current AS (
    SELECT t.id,
           CASE %(rule)s
               WHEN 'sum' THEN sum(o.value)
               WHEN 'max' THEN max(o.value)
               WHEN 'min' THEN min(o.value)
               WHEN 'area_weighted_mean' THEN sum(o.value * d.area_m2) / NULLIF(sum(d.area_m2), 0)
               ELSE avg(o.value)
           END AS v
      FROM tile_units t
      -- the unit itself, or the units below it: codes between 'code/' and 'code0'
      -- ('0' follows '/'), a range the code index (text_pattern_ops) serves
      JOIN ciu.unit d ON d.level = %(base)s
                     AND (CASE WHEN %(base)s = %(level)s THEN d.id = t.id
                               ELSE d.code ~>=~ (t.code || '/') AND d.code ~<~ (t.code || '0') END)
      JOIN ciu.observation o ON o.unit_id = d.id AND o.variable_id = %(vid)s AND o.time = %(t)s
     GROUP BY t.id
), forecast AS (
    SELECT p.unit_id, p.value, p.risk, p.time
      FROM ciu.prediction p JOIN tile_units t ON t.id = p.unit_id
     WHERE p.run_id = %(run)s AND p.scenario = 'baseline' AND p.variable_id = %(vid)s
       AND p.issued_at = %(issued)s AND p.horizon = %(horizon)s
), features AS (
    SELECT t.code, t.name, t.level, t.z_min, t.z_max, round(t.area_m2::numeric, 1)::float8 AS area_m2,
           t.attrs,
           ciu.api_public_count(c.v, %(exact)s, %(k)s, %(epsilon)s) AS current,
           ciu.api_public_count(f.value, %(exact)s, %(k)s, %(epsilon)s) AS forecast,
           f.risk AS forecast_risk,
           t.geom
      FROM tile_units t
      LEFT JOIN current c ON c.id = t.id
      LEFT JOIN forecast f ON f.unit_id = t.id
     WHERE t.geom IS NOT NULL
)
SELECT coalesce(ST_AsMVT(features, %(layer)s, 4096, 'geom'), ''::bytea) FROM features
