-- The first staged unit whose parent is not exactly one level up (or a root below the top).
SELECT s.row, s.code, s.level, s.parent_code, coalesce(ps.level, pu.level) AS parent_level
  FROM unit_stage s
  JOIN ciu.level l ON l.name = s.level
  LEFT JOIN unit_stage ps ON ps.code = s.parent_code
  LEFT JOIN ciu.unit pu ON pu.code = s.parent_code
  LEFT JOIN ciu.level lp ON lp.name = coalesce(ps.level, pu.level)
 WHERE (s.parent_code IS NOT NULL AND lp.rank IS DISTINCT FROM l.rank + 1)
    OR (s.parent_code IS NULL AND l.rank <> (SELECT max(rank) FROM ciu.level))
 ORDER BY s.row
 LIMIT 1
