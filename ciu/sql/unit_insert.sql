-- Move the staged units of one level into place (parents are already there).
INSERT INTO ciu.unit (code, level, parent_id, name, geom, area_m2, z_min, z_max, attrs, restricted, source_id)
SELECT s.code, s.level, p.id, s.name, ST_SetSRID(ST_GeomFromWKB(s.wkb), 4326), s.area_m2, s.z_min, s.z_max,
       s.attrs::jsonb, s.restricted::jsonb, %(source_id)s
  FROM unit_stage s
  LEFT JOIN ciu.unit p ON p.code = s.parent_code
 WHERE s.level = %(level)s
   AND NOT EXISTS (SELECT 1 FROM ciu.unit u WHERE u.code = s.code)
 ORDER BY s.code
