-- Access to the prediction API: roles, hashed keys, the audit log, usage counters,
-- and the privacy of published counts.
-- The current definition, in one place: a test checks that a fresh migration
-- (ciu/migrations) builds exactly this schema.

CREATE TABLE ciu.api_role (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    restricted_attrs text[] NOT NULL DEFAULT '{}',  -- restricted attribute names it may read; '*' = all
    exact_counts boolean NOT NULL DEFAULT false,      -- false: public counts are suppressed below k (and noised)
    can_acknowledge boolean NOT NULL DEFAULT false,   -- may acknowledge alerts
    can_audit boolean NOT NULL DEFAULT false,         -- may read the audit log and everyone's usage
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE ciu.api_role IS 'What an API key may see and do; the role "public" is used for calls without a key.';
INSERT INTO ciu.api_role (name, restricted_attrs, exact_counts, can_acknowledge, can_audit, description) VALUES
    ('public', '{}', false, false, false, 'anyone: public attributes, small counts suppressed'),
    ('viewer', '{}', true, false, false, 'another city app: public attributes, exact counts'),
    ('operator', '{}', true, true, false, 'operations centre: exact counts, acknowledges alerts'),
    ('finance', '{tax_status,assessed_value_eur}', true, false, false, 'finance department: tax attributes'),
    ('security', '{security_level}', true, true, false, 'public safety: security attributes'),
    ('admin', '{*}', true, true, true, 'every attribute, the audit log and all usage');

CREATE TABLE ciu.api_key (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL REFERENCES ciu.api_role (name),
    prefix text NOT NULL,                                    -- first characters of the token, to tell keys apart
    token_sha256 text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
COMMENT ON COLUMN ciu.api_key.token_sha256 IS 'sha256 of the secret token; the token itself is never stored.';

CREATE TABLE ciu.api_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    key_id bigint REFERENCES ciu.api_key (id) ON DELETE SET NULL,
    role text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    query text NOT NULL DEFAULT '',
    status integer NOT NULL,
    units integer NOT NULL DEFAULT 0,          -- how many units the answer described
    restricted_read boolean NOT NULL DEFAULT false,
    duration_ms double precision NOT NULL DEFAULT 0
);
CREATE INDEX api_audit_key_at ON ciu.api_audit (key_id, at);
COMMENT ON TABLE ciu.api_audit IS 'Who read what, one row per API call.';

CREATE TABLE ciu.api_usage (
    key_id bigint NOT NULL DEFAULT 0,          -- 0: calls without a key
    endpoint text NOT NULL,
    day date NOT NULL,
    calls bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, endpoint, day)
);
COMMENT ON TABLE ciu.api_usage IS 'Calls per key, endpoint (route template) and day.';

-- Laplace noise of scale ``scale``, in its own function so that api_public_count
-- stays a plain CASE expression the planner inlines into every forecast and
-- tile query (the noise is drawn only where it applies).
CREATE FUNCTION ciu.laplace_noise(scale double precision)
RETURNS double precision LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT -scale * sign(u) * ln(greatest(1e-12, 1.0 - 2.0 * abs(u))) FROM (SELECT random() - 0.5 AS u) AS draw
$$;

-- Which variables are published as counts (suppressed and noised for the public):
-- social variables that roll up by sum. The SQL twin of ciu.domain.Variable.is_count.
CREATE FUNCTION ciu.is_count(rollup text, space text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $1 = 'sum' AND $2 = 'social'
$$;

-- Privacy of published counts: for callers without exact access, counts above 0
-- and below k are withheld (NULL) and the rest get Laplace noise of scale
-- 1/epsilon (a count has sensitivity 1), clipped at 0. epsilon NULL or <= 0: no noise.
-- The SQL twin of ciu.api.privacy.public_counts; a test holds the two together.
CREATE FUNCTION ciu.api_public_count(v double precision, exact boolean, k double precision,
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
