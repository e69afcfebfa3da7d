"""The schema in one place: a fresh migration builds exactly the schema of ``ciu/schema/*.sql``."""

from __future__ import annotations

import difflib
import re
import subprocess
from importlib import resources

import psycopg
from psycopg import sql

from ciu.cluster import find_bindir


def _dump(url: str) -> str:
    """The ``ciu`` schema as pg_dump writes it (the migration log left out), without comments and settings."""
    out = subprocess.run([str(find_bindir() / "pg_dump"), "--schema-only", "--schema=ciu", "--no-owner",
                          "--exclude-table=ciu.migration", "-d", url], check=True, capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith(("--", "SET ", "SELECT ", "\\"))]
    return "\n".join(lines)


def test_a_fresh_migration_builds_exactly_the_schema_sources(pg_server, db_url) -> None:
    name = "schema_sources_probe"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg_server.url_for(name)
    try:
        sources = sorted(resources.files("ciu.schema").iterdir(), key=lambda p: p.name)
        sources = [p for p in sources if re.fullmatch(r"\d\d_[a-z_]+\.sql", p.name)]
        assert [p.name for p in sources] == ["10_units.sql", "20_observations.sql", "30_forecasts.sql",
                                             "40_access.sql"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA ciu")
            for path in sources:
                conn.execute(path.read_text(encoding="utf-8"))
            roles = conn.execute("SELECT * FROM ciu.api_role ORDER BY name").fetchall()
        migrated, built = _dump(db_url), _dump(url)
        assert "CREATE TABLE ciu.prediction" in built and "CREATE FUNCTION ciu.check_tree" in built
        difference = list(difflib.unified_diff(migrated.splitlines(), built.splitlines(), "migrations",
                                               "ciu/schema", lineterm="", n=2))
        assert not difference, "\n".join(difference[:80])
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT * FROM ciu.api_role ORDER BY name").fetchall() == roles
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
