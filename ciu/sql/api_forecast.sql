-- The stored forecast of a variable at one horizon for every unit of one level,
-- from one run and issue time (the newest, chosen by the caller), as arrays of
-- unit ids, values and risks, as array literals: a vector tile joins these in
-- (see api_tile.sql).
SELECT coalesce(array_agg(p.unit_id), ARRAY[]::bigint[])::text,
       coalesce(array_agg(p.value), ARRAY[]::float8[])::text,
       coalesce(array_agg(p.risk), ARRAY[]::float8[])::text
  FROM ciu.prediction p
  JOIN ciu.unit u ON u.id = p.unit_id
 WHERE p.run_id = %(run)s AND p.scenario = 'baseline' AND p.variable_id = %(vid)s
   AND p.issued_at = %(issued)s AND p.horizon = %(horizon)s AND u.level = %(level)s
