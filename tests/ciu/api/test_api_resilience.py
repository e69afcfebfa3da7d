"""With its database stopped the API answers 503, and it recovers by itself when the database is back."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from ciu.api.app import create_app
from ciu.api.settings import ApiSettings
from ciu.cluster import Cluster
from ciu.migrate import migrate


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A small cluster of its own, so that stopping it touches no other test."""
    home = Path(tempfile.mkdtemp(prefix="ciu-api-db-"))
    os.chmod(home, 0o755)
    cluster = Cluster(home / "pgdata", Path(f"/tmp/ciu-api-{os.getpid()}"), port=5439, ephemeral=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.slow
def test_503_while_the_database_is_down_then_recovers(own_cluster: Cluster) -> None:
    own_cluster.ensure_database("ciu")
    url = own_cluster.url("ciu")
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    settings = ApiSettings(db_timeout_s=1.0, rate_limit_per_minute=0, pool_min=2)
    with TestClient(create_app(settings, database_url=url)) as client:
        assert client.get("/levels").status_code == 200
        assert client.get("/health").status_code == 200
        own_cluster.stop()
        for path in ("/levels", "/units", "/predictions", "/collections"):
            r = client.get(path)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["status"] == 503
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["database"] is False
        own_cluster.start()
        deadline = time.monotonic() + 30
        codes = []
        while time.monotonic() < deadline:
            codes.append(client.get("/levels").status_code)
            if codes[-1] == 200:
                break
            time.sleep(0.5)
        assert codes[-1] == 200, codes
        assert client.get("/health").json()["database"] is True
        assert [lv["name"] for lv in client.get("/levels").json()] == ["floor", "building", "grid", "district", "city"]
