-- The first staged unit that is already stored with different content.
SELECT s.row, s.code,
       CASE WHEN u.level <> s.level THEN 'level'
            WHEN p.code IS DISTINCT FROM s.parent_code THEN 'parent'
            WHEN NOT ST_OrderingEquals(u.geom, s.geom) THEN 'geometry'
            WHEN u.name IS DISTINCT FROM s.name THEN 'name'
            WHEN u.z_min IS DISTINCT FROM s.z_min OR u.z_max IS DISTINCT FROM s.z_max THEN 'z-range'
            WHEN u.attrs <> s.attrs THEN 'attrs'
            ELSE 'restricted attributes' END AS what
  FROM unit_stage s
  JOIN ciu.unit u ON u.code = s.code
  LEFT JOIN ciu.unit p ON p.id = u.parent_id
 WHERE u.level <> s.level
    OR p.code IS DISTINCT FROM s.parent_code
    OR NOT ST_OrderingEquals(u.geom, s.geom)
    OR u.name IS DISTINCT FROM s.name
    OR u.z_min IS DISTINCT FROM s.z_min OR u.z_max IS DISTINCT FROM s.z_max
    OR u.attrs <> s.attrs
    OR u.restricted <> s.restricted
 ORDER BY s.row
 LIMIT 1
