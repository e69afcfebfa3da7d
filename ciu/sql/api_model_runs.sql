-- Model runs, newest first, each with its headline skill per level on the test steps: the
-- champion's RMSE over every horizon, seasonal naive's, the champion's gain over it (per cent,
-- as the run recorded it) and how often the truth fell in the champion's p10..p90 band. Runs
-- recorded before models were compared (kind tower) scored the tower alone, directly per level,
-- with no reference and no band. The caller composes the WHERE filters and the extra columns
-- from fixed fragments with bound parameters.
WITH runs AS (
    SELECT r.id, r.name, r.kind, r.status, r.created_at, r.params, r.data_hash, r.code_version, r.metrics,
           r.metrics ? 'champion' AS compared,
           coalesce(r.params->>'target', 'people') AS target,
           coalesce(r.metrics->>'step', r.params->>'step') AS step,
           coalesce(CASE WHEN jsonb_typeof(r.metrics->'levels') = 'array' THEN r.metrics->'levels' END,
                    CASE WHEN jsonb_typeof(r.params->'levels') = 'array' THEN r.params->'levels' END,
                    '[]'::jsonb) AS levels,
           coalesce(r.metrics->>'horizons', r.params #>> ARRAY['train', 'horizons']) AS horizons,
           coalesce(r.metrics->>'champion',
                    CASE WHEN r.kind = 'tower' AND r.metrics ? 'validation' THEN 'tower' END) AS champion
      FROM ciu.model_run r
     WHERE {filters}
     ORDER BY r.id DESC
     LIMIT %(limit)s
)
SELECT r.id, r.name, r.kind, r.status, r.created_at, r.target, r.step,
       r.levels,
       CASE WHEN r.horizons ~ '^[0-9]+$' AND length(r.horizons) < 10 THEN r.horizons::int END AS horizons,
       r.champion,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'level', lv.name,
                   'rmse', (CASE WHEN r.compared THEN r.metrics #> ARRAY['test', r.champion, lv.name, 'rmse_all']
                                 ELSE r.metrics #> ARRAY['test', lv.name, 'rmse_all'] END),
                   'seasonal_naive_rmse', r.metrics #> ARRAY['test', 'seasonal_naive', lv.name, 'rmse_all'],
                   'gain_pct', r.metrics #> ARRAY['skill', 'test', r.champion, lv.name],
                   'coverage_p10_p90', r.metrics #> ARRAY['probabilistic', 'test', lv.name, 'coverage_p10_p90'])
                   ORDER BY lv.i), '[]'::jsonb)
          FROM jsonb_array_elements_text(r.levels) WITH ORDINALITY AS lv(name, i)) AS skill
       {columns}
  FROM runs r
 ORDER BY r.id DESC
