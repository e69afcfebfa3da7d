-- Published counts are computed on every forecast and tile read. The function of
-- 003 drew its noise in a sub-select, which keeps the planner from inlining it:
-- each call ran through the SQL-function executor (tens of microseconds a row).
-- The noise now comes from its own function, reached only when noise applies, so
-- api_public_count is a plain CASE expression the planner inlines into the query.
-- Same rules as before: counts above 0 and below k withheld, Laplace noise of
-- scale 1/epsilon otherwise (clipped at 0), exact values for exact roles.
CREATE FUNCTION ciu.laplace_noise(scale double precision)
RETURNS double precision LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT -scale * sign(u) * ln(greatest(1e-12, 1.0 - 2.0 * abs(u))) FROM (SELECT random() - 0.5 AS u) AS draw
$$;

CREATE OR REPLACE FUNCTION ciu.api_public_count(v double precision, exact boolean, k double precision,
                                                epsilon double precision)
RETURNS double precision LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN v IS NULL THEN NULL
        WHEN exact THEN v
        WHEN v > 0 AND v < k THEN NULL
        WHEN epsilon IS NULL OR epsilon <= 0 THEN v
        ELSE greatest(0.0, v + ciu.laplace_noise(1.0 / epsilon))
    END
$$;
