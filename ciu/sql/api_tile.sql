-- One Mapbox vector tile of the units of one level, with the current value of a
-- variable (computed by api_current.sql for the whole level and passed in as
-- arrays of unit ids and values) and the stored forecast at one horizon.
-- Restricted attributes are merged in only for the names in the allowed list ('*' = all).
-- The caller composes the attributes expression from the fixed fragments in
-- ciu/api_store.py.
WITH env AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS box3857
), env4326 AS (
    SELECT box3857, ST_Transform(box3857, 4326) AS box4326 FROM env
), tile_units AS (
    SELECT u.id, u.code, u.name, u.level, u.area_m2, u.z_min, u.z_max,
           {attrs} AS attrs,
           ST_AsMVTGeom(ST_Transform(u.geom, 3857), e.box3857, 4096, 64, true) AS geom
      FROM ciu.unit u, env4326 e
     WHERE u.level = %(level)s AND u.geom && e.box4326
), current AS (
    SELECT c.id, c.v FROM unnest(%(cur_ids)s::bigint[], %(cur_vals)s::float8[]) AS c(id, v)
), features AS (
    SELECT t.code, t.name, t.level, t.z_min, t.z_max, round(t.area_m2::numeric, 1)::float8 AS area_m2,
           t.attrs,
           ciu.api_public_count(c.v, %(exact)s, %(k)s, %(epsilon)s) AS current,
           ciu.api_public_count(f.value, %(exact)s, %(k)s, %(epsilon)s) AS forecast,
           f.risk AS forecast_risk,
           t.geom
      FROM tile_units t
      LEFT JOIN current c ON c.id = t.id
      LEFT JOIN LATERAL (SELECT p.value, p.risk FROM ciu.prediction p
                          WHERE p.run_id = %(run)s AND p.scenario = 'baseline' AND p.variable_id = %(vid)s
                            AND p.unit_id = t.id AND p.issued_at = %(issued)s AND p.horizon = %(horizon)s LIMIT 1) f ON true
     WHERE t.geom IS NOT NULL
)
SELECT coalesce(ST_AsMVT(features, %(layer)s, 4096, 'geom'), ''::bytea) FROM features
