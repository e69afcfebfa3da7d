-- Probabilistic forecasts: the 10th, 50th and 90th percentiles beside the point forecast.
-- NULL for forecasts stored without them (earlier runs, forecasters that give none).
ALTER TABLE ciu.prediction
    ADD COLUMN q10 double precision,
    ADD COLUMN q50 double precision,
    ADD COLUMN q90 double precision,
    ADD CONSTRAINT prediction_quantiles_ordered
        CHECK (q10 IS NULL OR q50 IS NULL OR q90 IS NULL OR (q10 <= q50 AND q50 <= q90));
COMMENT ON COLUMN ciu.prediction.q10 IS 'The forecast''s 10th percentile (sample paths summed up the hierarchy).';
COMMENT ON COLUMN ciu.prediction.q90 IS 'The forecast''s 90th percentile; p10..p90 is the 80 % band.';
