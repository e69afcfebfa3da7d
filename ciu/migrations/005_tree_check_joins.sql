-- The tree invariant, checked with joins over the inserted rows themselves.
--
-- Inserts used to pass every new id in an array to ciu.check_tree, which looked
-- each unit and its parent up by id: two index probes per row, 4.5 s for a
-- city of 1.1M units. The insert trigger now joins its transition table to
-- the parents directly, so the planner can hash or memoise the lookups (it
-- knows how many rows the statement inserted). What counts as a violation and
-- the error raised for it are defined once, below, for inserts and updates.

-- Which rule a unit breaks (NULL when none), from the unit, its parent, its
-- level's rank, its parent's rank, the top rank and whether its source exists.
CREATE FUNCTION ciu.tree_fault(code text, rank integer, parent_id bigint, parent_code text, parent_rank integer,
                               top integer, source_id bigint, source_found bigint)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN rank IS NULL THEN 'level'
        WHEN source_id IS NOT NULL AND source_found IS NULL THEN 'source'
        WHEN parent_id IS NULL THEN CASE WHEN rank <> top THEN 'root' END
        WHEN parent_code IS NULL THEN 'parent'
        WHEN parent_rank IS DISTINCT FROM rank + 1 THEN 'parent level'
        WHEN NOT (starts_with(code, parent_code) AND substr(code, length(parent_code) + 1, 1) = '/') THEN 'code'
    END
$$;

CREATE FUNCTION ciu.raise_tree_fault(fault text, code text, level text, parent_id bigint, parent_code text,
                                     parent_level text, source_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF fault = 'level' THEN
        RAISE EXCEPTION 'unit % has unknown level %', code, level
            USING ERRCODE = 'check_violation', COLUMN = 'level', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'source' THEN
        RAISE EXCEPTION 'unit % refers to source % that does not exist', code, source_id
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'source_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'root' THEN
        RAISE EXCEPTION 'unit % (level %) has no parent; only % units may be roots',
            code, level, (SELECT name FROM ciu.level ORDER BY rank DESC LIMIT 1)
            USING ERRCODE = 'check_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'parent' THEN
        RAISE EXCEPTION 'unit % has parent id % that does not exist', code, parent_id
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSIF fault = 'parent level' THEN
        RAISE EXCEPTION 'unit % (level %) has parent % at level %; its parent must be one level up',
            code, level, parent_code, parent_level
            USING ERRCODE = 'check_violation', COLUMN = 'parent_id', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    ELSE
        RAISE EXCEPTION 'unit code % does not extend its parent''s code %', code, parent_code
            USING ERRCODE = 'check_violation', COLUMN = 'code', CONSTRAINT = 'unit_tree', TABLE = 'unit',
                  DETAIL = code;
    END IF;
END;
$$;

-- Every unit with the rule it breaks (fault NULL when none). Triggers join the
-- rows they touched to it; the planner then pushes the join down.
CREATE VIEW ciu.unit_tree_fault AS
SELECT u.id, f.fault, u.code, u.level, u.parent_id, p.code AS parent_code, p.level AS parent_level, u.source_id
  FROM ciu.unit u
  LEFT JOIN ciu.level lu ON lu.name = u.level
  LEFT JOIN ciu.unit p ON p.id = u.parent_id
  LEFT JOIN ciu.level lp ON lp.name = p.level
  LEFT JOIN ciu.source s ON s.id = u.source_id
 CROSS JOIN LATERAL (SELECT ciu.tree_fault(u.code, lu.rank, u.parent_id, p.code, lp.rank,
                                           (SELECT max(rank) FROM ciu.level), u.source_id, s.id) AS fault) f;

-- Updates: the units given by id (the updated ones and their children).
CREATE OR REPLACE FUNCTION ciu.check_tree(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT v.* INTO bad FROM unnest(ids) AS t(id) JOIN ciu.unit_tree_fault v ON v.id = t.id
     WHERE v.fault IS NOT NULL;
    IF FOUND THEN
        PERFORM ciu.raise_tree_fault(bad.fault, bad.code, bad.level, bad.parent_id, bad.parent_code,
                                     bad.parent_level, bad.source_id);
    END IF;
END;
$$;

-- Inserts: the statement's new rows, joined as a set (hash joins for a bulk load).
CREATE OR REPLACE FUNCTION ciu.unit_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT v.* INTO bad FROM new_units n JOIN ciu.unit_tree_fault v ON v.id = n.id WHERE v.fault IS NOT NULL;
    IF FOUND THEN
        PERFORM ciu.raise_tree_fault(bad.fault, bad.code, bad.level, bad.parent_id, bad.parent_code,
                                     bad.parent_level, bad.source_id);
    END IF;
    IF EXISTS (SELECT 1 FROM new_units WHERE area_m2 IS NULL) THEN
        UPDATE ciu.unit u SET area_m2 = ST_Area(u.geom::geography)
          FROM new_units n WHERE u.id = n.id AND n.area_m2 IS NULL;
    END IF;
    RETURN NULL;
END;
$$;
