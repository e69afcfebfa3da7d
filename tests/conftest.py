"""Test fixtures: one real PostGIS cluster per session, a fresh database per test.

The session starts a throw-away cluster (or uses the server named by
``CIU_TEST_ADMIN_URL``), migrates a template database once, and copies it for
each test (``CREATE DATABASE ... TEMPLATE``, about 60 ms). A second template
holds the tiny canonical test city made by the project's own generator.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ciu.cluster import Cluster
from ciu.ingest.generator import SampleConfig, build_sample
from ciu.migrate import migrate
from ciu.twin import Twin

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: the tiny canonical test city: small enough for every test, every level present
TINY_CITY = SampleConfig(name="tiny", buildings=16, weeks=2, districts=3, h3_resolution=9, radius_m=700,
                         events_per_week=2, seed=7)


class Server:
    """A PostgreSQL server the tests may create databases in."""

    def __init__(self, admin_url: str, url_for) -> None:
        self.admin_url = admin_url
        self.url_for = url_for
        self._n = itertools.count()

    def create(self, template: str) -> str:
        name = f"t_{os.getpid()}_{next(self._n)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    admin = os.environ.get("CIU_TEST_ADMIN_URL")
    if admin:
        base = admin.rsplit("/", 1)[0]
        yield Server(admin, lambda db: f"{base}/{db}")
        return
    home = Path(tempfile.mkdtemp(prefix="ciu-test-"))
    os.chmod(home, 0o755)
    cluster = Cluster(home / "pgdata", Path(f"/tmp/ciu-test-{os.getpid()}"), port=5433, ephemeral=True)
    cluster.start()
    try:
        yield Server(cluster.url("postgres"), cluster.url)
    finally:
        cluster.destroy()


def _template(server: Server, name: str, build) -> str:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(server.url_for(name), autocommit=True) as conn:
        migrate(conn)
    if build is not None:
        twin = Twin.connect(server.url_for(name), migrate=False)
        try:
            build(twin)
        finally:
            twin.close()
    return name


@pytest.fixture(scope="session")
def empty_template(pg_server: Server) -> str:
    return _template(pg_server, f"tpl_empty_{os.getpid()}", None)


@pytest.fixture(scope="session")
def city_template(pg_server: Server) -> str:
    return _template(pg_server, f"tpl_city_{os.getpid()}", lambda twin: build_sample(twin, TINY_CITY))


def _fresh(server: Server, template: str) -> Iterator[str]:
    name = server.create(template)
    try:
        yield server.url_for(name)
    finally:
        server.drop(name)


@pytest.fixture
def db_url(pg_server: Server, empty_template: str) -> Iterator[str]:
    """URL of a fresh, migrated, empty database."""
    yield from _fresh(pg_server, empty_template)


@pytest.fixture
def city_url(pg_server: Server, city_template: str) -> Iterator[str]:
    """URL of a fresh database holding the tiny test city."""
    yield from _fresh(pg_server, city_template)


@pytest.fixture
def twin(db_url: str) -> Iterator[Twin]:
    t = Twin.connect(db_url, migrate=False)
    yield t
    t.close()


@pytest.fixture
def city(city_url: str) -> Iterator[Twin]:
    t = Twin.connect(city_url, migrate=False)
    yield t
    t.close()


def fingerprint(twin: Twin) -> dict[str, object]:
    """Counts and checksums of every table of the twin: equal means unchanged."""
    out: dict[str, object] = {}
    conn = twin.store.conn
    tables = [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'ciu' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1")]
    for table in tables:
        row = conn.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                                   " FROM ciu.{} t").format(sql.Identifier(table))).fetchone()
        out[table] = row
    return out
