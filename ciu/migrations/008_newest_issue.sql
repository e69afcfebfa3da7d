-- The newest forecast issue, defined once for the store and the API's queries.
CREATE FUNCTION ciu.newest_issue(of_scenario text, of_variable smallint DEFAULT NULL, of_run bigint DEFAULT NULL)
RETURNS TABLE (run_id bigint, issued_at timestamptz) LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT r.id, (SELECT max(p.issued_at) FROM ciu.prediction p WHERE p.run_id = r.id AND p.scenario = $1)
      FROM (SELECT coalesce($3, (SELECT max(p.run_id) FROM ciu.prediction p
                                  WHERE p.scenario = $1 AND ($2 IS NULL OR p.variable_id = $2))) AS id) AS r
     WHERE r.id IS NOT NULL
$$;
