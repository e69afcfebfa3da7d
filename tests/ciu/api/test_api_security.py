"""Keys, roles, restricted attributes, privacy of counts, audit, limits and SQL injection."""

from __future__ import annotations

import json
import time

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from tests.ciu.api.conftest import RESTRICTED, ROLES, ApiWorld, as_role, fingerprint, tile_of
from fastapi.testclient import TestClient

from ciu.api.app import create_app
from ciu.api.privacy import public_forecasts
from ciu.api.settings import ApiSettings
from ciu.store import ApiStore
from ciu.store.access import hash_token
from ciu.twin import Twin

ALLOWED = {"public": set(), "viewer": set(), "operator": set(), "finance": {"tax_status", "assessed_value_eur"},
           "security": {"security_level"}, "admin": set(RESTRICTED)}


def _unit_payloads(client: TestClient, world: ApiWorld, headers: dict[str, str]) -> list[dict]:
    """Every answer that carries unit attributes, as property dicts."""
    out = []
    out += [f["properties"] for f in client.get("/units", params={"level": "building", "limit": 100},
                                                headers=headers).json()["features"]]
    out.append(client.get(f"/units/{world.building}", headers=headers).json()["properties"])
    out += [f["properties"] for f in client.get("/collections/building/items", params={"limit": 100},
                                                headers=headers).json()["features"]]
    item = client.get(f"/collections/building/items/{world.building}", headers=headers).json()
    out.append(item["properties"])
    return out


def _tile_props(client: TestClient, world: ApiWorld, headers: dict[str, str]) -> list[dict]:
    geom = shapely.geometry.shape(client.get(f"/units/{world.building}", headers=headers).json()["geometry"])
    p = geom.representative_point()
    props = []
    for z in (12, 14):
        x, y = tile_of(p.x, p.y, z)
        tile = mapbox_vector_tile.decode(client.get(f"/tiles/building/{z}/{x}/{y}.mvt", headers=headers).content)
        props += [f["properties"] for f in tile["building"]["features"]]
    return props


@pytest.mark.parametrize("role", ["anonymous", *ROLES])
def test_restricted_attributes_only_for_allowed_roles(client, api_world: ApiWorld, role: str) -> None:
    headers = as_role(api_world, role)
    allowed = ALLOWED.get(role, set())
    payloads = _unit_payloads(client, api_world, headers)
    assert payloads
    for props in payloads:
        assert set(props["restricted"]) == allowed, props["code"]
        text = json.dumps(props)
        for name in set(RESTRICTED) - allowed:
            assert name not in text
    tiles = _tile_props(client, api_world, headers)
    assert tiles
    for props in tiles:
        for name in RESTRICTED:
            assert (name in props) == (name in allowed)
    for path in ("/predictions", "/risk", "/alerts", "/levels", "/collections"):
        text = client.get(path, headers=headers).text
        for name in set(RESTRICTED) - allowed:
            assert name not in text, path


def test_keys_are_stored_hashed(api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        rows = twin.store.conn.execute("SELECT token_sha256, prefix FROM ciu.api_key").fetchall()
    stored = {r[0] for r in rows}
    for token in api_world.tokens.values():
        assert token not in stored and hash_token(token) in stored
        assert all(token not in "".join(r) or len(r[1]) < len(token) for r in rows)


def test_unknown_and_revoked_keys_are_refused(api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        api = ApiStore(twin.store.conn)
        key, token = api.create_key(name="short-lived", role="viewer")
        settings = ApiSettings(key_cache_s=0, rate_limit_per_minute=0)
        with TestClient(create_app(settings, database_url=api_world.url)) as c:
            assert c.get("/levels", headers={"X-API-Key": token}).status_code == 200
            assert c.get("/levels", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert c.get("/levels", headers={"Authorization": f"bearer  {token} "}).status_code == 200
            api.revoke_key(key.id)
            r = c.get("/levels", headers={"X-API-Key": token})
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
            assert c.get("/levels", headers={"X-API-Key": "ciu_made_up"}).status_code == 401
            # whatever is presented as a credential must be a key: never served as anonymous
            for bad in ({"X-API-Key": ""}, {"X-API-Key": "  "}, {"Authorization": "Basic dXNlcjpwYXNz"},
                        {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, {"Authorization": token},
                        {"Authorization": f"Token {token}"}):
                r = c.get("/levels", headers=bad)
                assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", bad
                assert r.json()["detail"], bad
            assert c.get("/levels").status_code == 200  # nothing presented: anonymous
    closed = ApiSettings(allow_anonymous=False)
    with TestClient(create_app(closed, database_url=api_world.url)) as c:
        assert c.get("/levels").status_code == 401
        assert c.get("/levels", headers=as_role(api_world, "viewer")).status_code == 200


def test_small_counts_are_withheld_for_the_public(client, api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        stored = twin.store.predictions(level="floor")
    public = client.get("/predictions", params={"level": "floor"}).json()["predictions"]
    exact = client.get("/predictions", params={"level": "floor"}, headers=as_role(api_world, "viewer")).json()
    assert [p["value"] for p in exact["predictions"]] == stored["value"].tolist()
    small = (stored["value"] > 0) & (stored["value"] < 5)
    assert small.any(), "the tiny city has small floor counts"
    shown = [p["value"] for p in public]
    for value, is_small, truth in zip(shown, small, stored["value"]):
        assert (value is None) == bool(is_small)
        if not is_small:
            assert value == truth
    series = client.get(f"/units/{api_world.floor}/series", params={"source": "observed"}).json()["points"]
    truth = client.get(f"/units/{api_world.floor}/series", params={"source": "observed"},
                       headers=as_role(api_world, "viewer")).json()["points"]
    for shown, exact in zip(series, truth):
        assert shown["value"] == (None if 0 < exact["value"] < 5 else exact["value"])
    for props in _tile_props(client, api_world, {}):
        for name in ("current", "forecast"):
            assert name not in props or props[name] == 0 or props[name] >= 5
    floors = client.get("/risk", params={"level": "floor", "limit": 1000}).json()
    assert all(r["value"] is None or r["value"] == 0 or r["value"] >= 5 for r in floors)
    assert any(r["value"] is None for r in floors)


def test_public_forecasts_withhold_quantiles_with_their_value_and_keep_them_in_order() -> None:
    values = np.array([3.0, 12.0, 40.0, 0.0, 9.0])
    quantiles = np.array([[1.0, 3.0, 8.0], [2.0, 11.0, 30.0], [30.0, 40.0, 55.0], [0.0, 0.0, 2.0],
                          [np.nan, np.nan, np.nan]])
    shown, bands = public_forecasts(values, quantiles, exact=False, k=5, epsilon=None)
    assert shown == [None, 12.0, 40.0, 0.0, 9.0]
    assert bands == [[None, None, None], [None, 11.0, 30.0], [30.0, 40.0, 55.0], [0.0, 0.0, None],
                     [None, None, None]]
    exact, stored = public_forecasts(values, quantiles, exact=True, k=5, epsilon=None)
    assert exact == values.tolist() and stored[0] == [1.0, 3.0, 8.0]
    rng = np.random.default_rng(3)
    close = np.array([[20.0, 20.5, 21.0]] * 200)  # noise of scale 2 crosses quantiles this close
    _, noisy = public_forecasts(np.full(200, 20.0), close, exact=False, k=5, epsilon=0.5, rng=rng)
    assert all(row == sorted(row) for row in noisy) and len({tuple(row) for row in noisy}) == 200


def test_laplace_noise_with_epsilon(api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        stored = twin.store.predictions(level="building")
    settings = ApiSettings(epsilon=0.5, k_threshold=5, rate_limit_per_minute=0)
    with TestClient(create_app(settings, database_url=api_world.url)) as c:
        noisy = [p["value"] for p in c.get("/predictions", params={"level": "building"}).json()["predictions"]]
        exact = [p["value"] for p in c.get("/predictions", params={"level": "building"},
                                           headers=as_role(api_world, "viewer")).json()["predictions"]]
    assert exact == stored["value"].tolist()
    published = [(n, t) for n, t in zip(noisy, stored["value"]) if n is not None]
    assert published and any(abs(n - t) > 1e-9 for n, t in published)
    assert all(n >= 0 for n, _ in published)
    diffs = [n - t for n, t in published if t > 10]
    assert abs(sum(diffs) / len(diffs)) < 3.0  # scale 2: mean noise near 0


def test_audit_log_records_who_read_what(client, api_world: ApiWorld) -> None:
    h = as_role(api_world, "finance")
    client.get(f"/units/{api_world.building}", headers=h)
    deadline = time.monotonic() + 5
    while True:  # a call is recorded just after its answer is sent
        log = client.get("/audit", headers=as_role(api_world, "admin"),
                         params={"key_id": api_world.key_ids["finance"]}).json()
        mine = [r for r in log if r["path"] == f"/units/{api_world.building}"]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine and mine[0]["role"] == "finance" and mine[0]["restricted_read"] is True and mine[0]["units"] == 1
    assert client.get("/audit", headers=as_role(api_world, "operator")).status_code == 403


def test_rate_limit_and_body_limit(api_world: ApiWorld) -> None:
    settings = ApiSettings(rate_limit_per_minute=60, rate_burst=3, max_body_bytes=1024)
    with TestClient(create_app(settings, database_url=api_world.url)) as c:
        h = as_role(api_world, "viewer")
        codes = [c.get("/levels", headers=h).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[-1] == 429
        r = c.get("/levels", headers=h)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # another key has its own budget
        assert c.get("/levels", headers=as_role(api_world, "admin")).status_code == 200
        big = {"holiday": True, "levels": ["city"] * 400}
        r = c.post("/scenarios", headers=as_role(api_world, "admin"), json=big)
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


def test_every_answer_reaches_the_audit_log_429s_and_odd_paths_included(api_world: ApiWorld) -> None:
    """A path with a NUL character (percent-decoded) once stopped every row after it from being written."""
    settings = ApiSettings(rate_limit_per_minute=60, rate_burst=3, audit_flush_s=0.2)
    marker = f"/units/audit-{time.time_ns()}"
    h = as_role(api_world, "viewer")
    with TestClient(create_app(settings, database_url=api_world.url)) as c:
        codes = [c.get(f"{marker}%00x", headers=h).status_code, c.get(f"{marker}%ED%A0%80", headers=h).status_code]
        codes += [c.get(marker, headers=h).status_code for _ in range(8)]
    # the app's shutdown writes what its recorder still holds
    with Twin.connect(api_world.url, migrate=False) as twin:
        rows = twin.store.conn.execute("SELECT path, status FROM ciu.api_audit WHERE path LIKE %s ORDER BY id",
                                       (marker + "%",)).fetchall()
    assert codes.count(429) >= 5
    assert sorted(status for _, status in rows) == sorted(codes)
    assert {path for path, _ in rows} >= {f"{marker}\\x00x", marker}


INJECTIONS = ["'; DROP TABLE ciu.unit; --", "1 OR 1=1", "tiny' OR '1'='1", "\"; SELECT pg_sleep(5); --",
              "tiny/d01') UNION SELECT * FROM ciu.api_key --", "%27%3B--", "tiny/../../etc/passwd",
              "tiny/d01\x00", "\x00"]


@pytest.mark.parametrize("bad", INJECTIONS)
def test_sql_injection_in_every_parameter_is_harmless(client, api_world: ApiWorld, bad: str) -> None:
    h = as_role(api_world, "admin")
    with Twin.connect(api_world.url, migrate=False) as twin:
        before = {k: v for k, v in fingerprint(twin).items() if not k.startswith("api_")}
    seg = bad.replace("\x00", "%00")  # in a path, a NUL character arrives percent-encoded
    calls = [
        ("GET", "/units", {"level": bad}), ("GET", "/units", {"bbox": bad}), ("GET", "/units", {"within": bad}),
        ("GET", "/units", {"code": bad}), ("GET", "/units", {"limit": bad}), ("GET", f"/units/{seg}", {}),
        ("GET", f"/units/{seg}/series", {}), ("GET", f"/units/{api_world.district}/series", {"variable": bad}),
        ("GET", f"/units/{api_world.district}/series", {"freq": bad}),
        ("GET", f"/units/{api_world.district}/series", {"start": bad}),
        ("GET", "/predictions", {"code": bad}), ("GET", "/predictions", {"level": bad}),
        ("GET", "/predictions", {"variable": bad}), ("GET", "/predictions", {"scenario": bad}),
        ("GET", "/predictions", {"issued_at": bad}), ("GET", "/predictions", {"run_id": bad}),
        ("GET", "/risk", {"level": bad}), ("GET", "/risk", {"code": bad}), ("GET", "/alerts", {"code": bad}),
        ("GET", "/alerts", {"level": bad}), ("GET", "/alerts", {"severity": bad}),
        ("POST", f"/alerts/{seg}/acknowledge", {}), ("GET", f"/collections/{seg}", {}),
        ("GET", f"/collections/{seg}/items", {}), ("GET", "/collections/building/items", {"bbox": bad}),
        ("GET", f"/collections/building/items/{seg}", {}), ("GET", f"/tiles/{seg}/12/2106/1346.mvt", {}),
        ("GET", "/tiles/building/12/2106/1346.mvt", {"variable": bad}),
        ("GET", "/tiles/building/12/2106/1346.mvt", {"time": bad}), ("GET", "/usage", {"key_id": bad}),
        ("GET", "/models", {"target": bad}), ("GET", "/models", {"limit": bad}), ("GET", f"/models/{seg}", {}),
    ]
    for method, path, params in calls:
        r = client.request(method, path, params=params, headers=h)
        assert r.status_code in (200, 404, 422), (path, params, r.status_code, r.text)
        if r.status_code == 200 and path == "/units":
            assert r.json()["numberReturned"] == 0
    for body in ({"closure": {"code": bad}}, {"event": {"code": bad, "time": "2026-04-01T00:00:00Z", "people": 5}},
                 {"holiday": True, "levels": [bad]}, {"holiday": True, "issued_at": bad}):
        r = client.post("/scenarios", json=body, headers=h)
        assert r.status_code in (404, 422), (body, r.status_code, r.text)
    if "\x00" not in bad:  # a header cannot carry a NUL character at all
        r = client.get("/units", params={"key": "x"}, headers={"X-API-Key": bad})
        assert r.status_code == 401
    with Twin.connect(api_world.url, migrate=False) as twin:
        after = {k: v for k, v in fingerprint(twin).items() if not k.startswith("api_")}
    assert after == before


def test_public_counts_are_computed_inline(twin: Twin) -> None:
    """The public-count rule is a plain expression in every query that uses it (no per-row call)."""
    plan = "\n".join(r[0] for r in twin.store.conn.execute(
        "EXPLAIN VERBOSE SELECT ciu.api_public_count(value, false, 5, 1.0) FROM ciu.prediction").fetchall())
    assert "api_public_count" not in plan
    assert "CASE WHEN" in plan and "laplace_noise" in plan


def test_answers_are_reused_for_reuse_s_per_privacy_setting(api_world: ApiWorld) -> None:
    """A noisy public answer is one draw for its reuse time; another role's exact answer is not mixed in."""
    with Twin.connect(api_world.url, migrate=False) as twin:
        stored = twin.store.predictions(level="building")["value"].tolist()

    def values(c: TestClient, headers: dict[str, str] | None = None) -> list:
        page = c.get("/predictions", params={"level": "building"}, headers=headers or {}).json()
        return [p["value"] for p in page["predictions"]]

    reusing = ApiSettings(epsilon=0.5, k_threshold=5, rate_limit_per_minute=0, reuse_s=600)
    with TestClient(create_app(reusing, database_url=api_world.url)) as c:
        first, again = values(c), values(c)
        exact = values(c, as_role(api_world, "viewer"))
    assert first == again and first != stored
    assert exact == stored
    fresh = ApiSettings(epsilon=0.5, k_threshold=5, rate_limit_per_minute=0, reuse_s=0)
    with TestClient(create_app(fresh, database_url=api_world.url)) as c:
        assert values(c) != values(c)  # drawn again on every call
