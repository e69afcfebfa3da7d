-- Staged observations whose (unit, variable, time) is stored with another value.
SELECT s.row, u.code, v.name, s.time, s.value, o.value
  FROM obs_stage s
  JOIN ciu.observation o ON (o.variable_id, o.unit_id, o.time) = (s.variable_id, s.unit_id, s.time)
  JOIN ciu.unit u ON u.id = s.unit_id
  JOIN ciu.variable v ON v.id = s.variable_id
 WHERE o.value <> s.value
 ORDER BY s.row
