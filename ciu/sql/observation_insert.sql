-- Move the staged observations that are not stored yet into place, in key order.
INSERT INTO ciu.observation (unit_id, variable_id, time, value, source_id)
SELECT s.unit_id, s.variable_id, s.time, s.value, %(source_id)s
  FROM obs_stage s
 WHERE NOT EXISTS (
        SELECT 1 FROM ciu.observation o
         WHERE o.variable_id = s.variable_id AND o.unit_id = s.unit_id AND o.time = s.time)
 ORDER BY s.variable_id, s.unit_id, s.time
