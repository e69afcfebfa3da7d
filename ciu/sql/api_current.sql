-- The current value of a variable for every unit of one level: its base-level
-- observations at one time aggregated over each unit's subtree by the roll-up
-- rule in one step. Used for sum, max and min only, where one step equals the
-- level-by-level rule of ciu.rollup (ciu/store/publish.py, ONE_STEP_EXACT;
-- tests/ciu/api/test_rollup_rule.py holds the two together); other rules go
-- level by level. The caller composes the subtree condition from the fixed
-- fragments in ciu/store/publish.py. The arrays come back as text literals,
-- which the API hands to api_tile.sql as they are.
SELECT coalesce(array_agg(c.id), ARRAY[]::bigint[])::text, coalesce(array_agg(c.v), ARRAY[]::float8[])::text
  FROM (
    SELECT t.id,
           CASE %(rule)s
               WHEN 'sum' THEN sum(o.value)
               WHEN 'max' THEN max(o.value)
               WHEN 'min' THEN min(o.value)
               WHEN 'area_weighted_mean' THEN sum(o.value * d.area_m2) / NULLIF(sum(d.area_m2), 0)
               ELSE avg(o.value)
           END AS v
      FROM ciu.unit t
      JOIN ciu.unit d ON d.level = %(base)s AND {subtree}
      -- one primary-key lookup per unit (LIMIT keeps it a lookup: a join would scan the partition)
      CROSS JOIN LATERAL (SELECT o.value FROM ciu.observation o
                           WHERE o.variable_id = %(vid)s AND o.unit_id = d.id AND o.time = %(t)s LIMIT 1) o
     WHERE t.level = %(level)s
     GROUP BY t.id
  ) c
