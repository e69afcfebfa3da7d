-- Which variables are protected as counts when published, defined once for the API's queries.
CREATE FUNCTION ciu.is_count(rollup text, space text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $1 = 'sum' AND $2 = 'social'
$$;
