-- One Mapbox vector tile of the units of one level, with the current value of a
-- variable and its stored forecast at one horizon (both computed for the whole
-- level by api_current.sql and api_forecast.sql, cached by the API for a few
-- seconds, and passed in as arrays of unit ids and values).
-- Restricted attributes are merged in only for the names in the allowed list ('*' = all).
-- The caller composes the attributes expression from the fixed fragments in
-- ciu/store/publish.py.
-- The statement runs as a prepared generic plan: the envelope is materialised so it
-- is computed once (not once per unit), and so are the clipped geometries (the
-- "geometry left after clipping" test would otherwise clip each unit twice).
WITH env AS MATERIALIZED (
    SELECT box3857, ST_Transform(box3857, 4326) AS box4326
      FROM (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS box3857) b
), tile_units AS MATERIALIZED (
    SELECT u.id, u.code, u.name, u.level, u.area_m2, u.z_min, u.z_max,
           {attrs} AS attrs,
           ST_AsMVTGeom(ST_Transform(u.geom, 3857), e.box3857, 4096, 64, true) AS geom
      FROM ciu.unit u, env e
     WHERE u.level = %(level)s AND u.geom && e.box4326
), current AS (
    SELECT c.id, c.v FROM unnest(%(cur_ids)s::bigint[], %(cur_vals)s::float8[]) AS c(id, v)
), forecast AS (
    SELECT f.id, f.value, f.risk
      FROM unnest(%(fc_ids)s::bigint[], %(fc_vals)s::float8[], %(fc_risks)s::float8[]) AS f(id, value, risk)
), features AS (
    SELECT t.code, t.name, t.level, t.z_min, t.z_max, round(t.area_m2::numeric, 1)::float8 AS area_m2,
           t.attrs,
           CASE WHEN %(counted)s THEN ciu.api_public_count(c.v, %(exact)s, %(k)s, %(epsilon)s) ELSE c.v END
               AS current,
           CASE WHEN %(counted)s THEN ciu.api_public_count(f.value, %(exact)s, %(k)s, %(epsilon)s) ELSE f.value END
               AS forecast,
           f.risk AS forecast_risk,
           t.geom
      FROM tile_units t
      LEFT JOIN current c ON c.id = t.id
      LEFT JOIN forecast f ON f.id = t.id
     WHERE t.geom IS NOT NULL
)
SELECT coalesce(ST_AsMVT(features, %(layer)s, 4096, 'geom'), ''::bytea) FROM features
