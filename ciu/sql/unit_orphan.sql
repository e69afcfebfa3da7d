-- The first staged unit whose parent is neither staged nor stored.
SELECT s.row, s.code, s.parent_code
  FROM unit_stage s
 WHERE s.parent_code IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM unit_stage p WHERE p.code = s.parent_code)
   AND NOT EXISTS (SELECT 1 FROM ciu.unit p WHERE p.code = s.parent_code)
 ORDER BY s.row
 LIMIT 1
