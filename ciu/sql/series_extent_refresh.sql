-- Recount the (variable, level) series touched by the staged observations.
INSERT INTO ciu.series_extent (variable_id, level, n, tmin, tmax)
SELECT o.variable_id, u.level, count(*), min(o.time), max(o.time)
  FROM ciu.observation o
  JOIN ciu.unit u ON u.id = o.unit_id
 WHERE (o.variable_id, u.level) IN (
        SELECT DISTINCT s.variable_id, uu.level FROM obs_stage s JOIN ciu.unit uu ON uu.id = s.unit_id)
 GROUP BY 1, 2
ON CONFLICT (variable_id, level) DO UPDATE SET n = excluded.n, tmin = excluded.tmin, tmax = excluded.tmax
