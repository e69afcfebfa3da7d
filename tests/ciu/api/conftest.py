"""Fixtures of the API tests: one database with the tiny city, forecasts, alerts and keys per module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ciu.api.app import create_app
from ciu.api.settings import ApiSettings
from ciu.forecast import HistoricalAverageForecaster
from ciu.store import ApiStore
from ciu.twin import Twin
from tests.conftest import fingerprint

__all__ = ["fingerprint"]

ROLES = ("public", "viewer", "operator", "finance", "security", "admin")
RESTRICTED = ("tax_status", "assessed_value_eur", "security_level")


@dataclass
class ApiWorld:
    url: str
    tokens: dict[str, str]
    key_ids: dict[str, int]
    run_id: int
    issued_at: pd.Timestamp
    building: str
    floor: str
    district: str


def seed(url: str) -> ApiWorld:
    """Forecasts of the historical-average forecaster, two alerts and one key per role."""
    twin = Twin.connect(url)
    try:
        last = twin.store.series_extent()["tmax"].max()
        issued = pd.Timestamp(last).tz_convert("UTC").floor("h")
        frame = HistoricalAverageForecaster().forecast(twin, issued_at=issued.to_pydatetime(), horizons=3)
        frame["issued_at"] = issued
        run = twin.store.add_model_run(name="historical average", kind="historical_average")
        twin.store.write_predictions(frame, run_id=run)
        buildings = twin.units(level="building")
        building = str(buildings.index[0])
        floor = twin.store.child_codes(building)[0]
        district = str(twin.units(level="district").index[0])
        twin.store.write_alerts(pd.DataFrame([
            {"code": building, "kind": "crowding", "severity": "warning", "time": issued + pd.Timedelta("1h"),
             "risk": 0.8, "threshold": 0.7, "message": "crowded"},
            {"code": district, "kind": "crowding", "severity": "critical", "time": issued + pd.Timedelta("2h"),
             "risk": 0.95, "threshold": 0.9, "message": "very crowded"},
        ]), run_id=run)
        api = ApiStore(twin.store.conn)
        tokens, ids = {}, {}
        for role in ROLES:
            key, token = api.create_key(name=f"{role} test", role=role)
            tokens[role], ids[role] = token, key.id
        return ApiWorld(url, tokens, ids, run, issued, building, floor, district)
    finally:
        twin.close()


@pytest.fixture(scope="module")
def api_world(pg_server, city_template) -> Iterator[ApiWorld]:
    name = pg_server.create(city_template)
    try:
        yield seed(pg_server.url_for(name))
    finally:
        pg_server.drop(name)


@pytest.fixture(scope="module")
def client(api_world: ApiWorld) -> Iterator[TestClient]:
    settings = ApiSettings(rate_limit_per_minute=0, k_threshold=5, audit_flush_s=0.2)
    with TestClient(create_app(settings, database_url=api_world.url)) as c:
        yield c


def as_role(world: ApiWorld, role: str) -> dict[str, str]:
    """Headers of a call made with the test key of ``role`` (``public`` calls without a key)."""
    return {} if role == "anonymous" else {"X-API-Key": world.tokens[role]}


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The Web Mercator tile (x, y) holding a point at zoom ``z``."""
    import math

    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y
