-- The tree check reads the inserted rows from the transition table itself.
--
-- Through the view ciu.unit_tree_fault, the insert trigger found each new row
-- again in ciu.unit: a scan and a hash of the whole table besides the parents'
-- (1.4 s of the 4 s check after loading a city of 1.1M units). The transition
-- table already holds every column the rules need, so the check now joins it
-- to the parents only. The query is written once, for any relation holding
-- unit rows, and run on the transition table (inserts) or on the units given
-- by id (updates).

-- The units of ``units`` (a relation of ciu.unit rows: a table name or a
-- parenthesised query) that break a rule, with the rule (see ciu.tree_fault).
-- No LIMIT: with one the planner expects to stop early and looks every parent
-- up by index; without, a bulk load gets hash joins. Callers take the first.
CREATE FUNCTION ciu.tree_fault_query(units text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT format($q$
        SELECT f.fault, u.code, u.level, u.parent_id, p.code AS parent_code, p.level AS parent_level, u.source_id
          FROM %s u
          LEFT JOIN ciu.level lu ON lu.name = u.level
          LEFT JOIN ciu.unit p ON p.id = u.parent_id
          LEFT JOIN ciu.level lp ON lp.name = p.level
          LEFT JOIN ciu.source s ON s.id = u.source_id
         CROSS JOIN LATERAL (SELECT ciu.tree_fault(u.code, lu.rank, u.parent_id, p.code, lp.rank,
                                                   (SELECT max(rank) FROM ciu.level), u.source_id, s.id) AS fault) f
         WHERE f.fault IS NOT NULL$q$, units)
$$;

-- Updates: the units given by id (the updated ones and their children).
CREATE OR REPLACE FUNCTION ciu.check_tree(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    EXECUTE ciu.tree_fault_query('(SELECT u.* FROM unnest($1) AS t(id) JOIN ciu.unit u ON u.id = t.id)')
       INTO bad USING ids;
    IF bad.fault IS NOT NULL THEN
        PERFORM ciu.raise_tree_fault(bad.fault, bad.code, bad.level, bad.parent_id, bad.parent_code,
                                     bad.parent_level, bad.source_id);
    END IF;
END;
$$;

-- Inserts: the statement's new rows, straight from the transition table.
CREATE OR REPLACE FUNCTION ciu.unit_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    EXECUTE ciu.tree_fault_query('new_units') INTO bad;
    IF bad.fault IS NOT NULL THEN
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

DROP VIEW ciu.unit_tree_fault;
