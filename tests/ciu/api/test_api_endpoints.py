"""Every endpoint and filter of the prediction API on a real PostGIS with the tiny city."""

from __future__ import annotations

import time

import mapbox_vector_tile
import pandas as pd
import pytest
import shapely

from ciu.api.schemas import PredictionPage
from ciu.twin import Twin
from tests.ciu.api.conftest import ApiWorld, as_role, tile_of


def test_landing_conformance_and_openapi(client, api_world: ApiWorld) -> None:
    landing = client.get("/").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= rels
    conf = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf
    spec = client.get("/openapi.json").json()
    assert "/predictions" in spec["paths"] and "/units/{code}" in spec["paths"]


def test_levels_bottom_first_with_counts(client, api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        counts = twin.store.count_units()
        levels = list(twin.levels)
    body = client.get("/levels").json()
    assert [lv["name"] for lv in body] == levels
    assert {lv["name"]: lv["units"] for lv in body} == counts


def test_units_filters_and_paging(client, api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        buildings = twin.units(level="building")
        below = twin.units(within=api_world.district)
    r = client.get("/units", params={"level": "building", "limit": 5})
    assert r.status_code == 200
    page = r.json()
    assert page["type"] == "FeatureCollection"
    assert page["numberMatched"] == len(buildings) and page["numberReturned"] == 5
    assert all(f["properties"]["level"] == "building" for f in page["features"])
    nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
    assert nxt, "a first page of several has a next link"
    seen = [f["id"] for f in page["features"]]
    while nxt:
        page = client.get(nxt[0]).json()
        seen += [f["id"] for f in page["features"]]
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
    assert sorted(seen) == sorted(buildings.index)
    # within: the unit and its subtree
    within = client.get("/units", params={"within": api_world.district, "limit": 1000}).json()
    assert sorted(f["id"] for f in within["features"]) == sorted(below.index)
    # code (repeatable)
    two = client.get("/units", params=[("code", api_world.building), ("code", api_world.district)]).json()
    assert sorted(f["id"] for f in two["features"]) == sorted([api_world.building, api_world.district])
    # bbox around one building's footprint finds it and not far-away units
    b = shapely.geometry.shape(two["features"][0]["geometry"] if two["features"][0]["id"] == api_world.building
                               else two["features"][1]["geometry"])
    x0, y0, x1, y1 = b.bounds
    boxed = client.get("/units", params={"level": "building", "bbox": f"{x0},{y0},{x1},{y1}"}).json()
    ids = [f["id"] for f in boxed["features"]]
    assert api_world.building in ids and len(ids) < len(buildings)


def test_unit_detail_with_hierarchy(client, api_world: ApiWorld) -> None:
    body = client.get(f"/units/{api_world.building}").json()
    assert body["id"] == api_world.building
    assert body["parent"] == api_world.building.rsplit("/", 1)[0]
    assert api_world.floor in body["children"]
    assert body["ancestors"][-1] == api_world.building.split("/")[0]
    assert body["properties"]["attrs"]["land_use"]
    assert client.get("/units/tiny/nowhere").status_code == 404


def test_series_rollup_and_observed(client, api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        expected = twin.rollup("people", level="district", codes=[api_world.district], freq="D")
        observed = twin.observations("people", codes=[api_world.floor])
    body = client.get(f"/units/{api_world.district}/series", params={"freq": "D"},
                      headers=as_role(api_world, "viewer")).json()
    assert body["level"] == "district" and body["unit_of_measure"] == "persons"
    assert [p["value"] for p in body["points"]] == expected["value"].tolist()
    start, end = observed["time"].iloc[10], observed["time"].iloc[20]
    part = client.get(f"/units/{api_world.floor}/series",
                      params={"source": "observed", "start": start.isoformat(), "end": end.isoformat()},
                      headers=as_role(api_world, "viewer")).json()
    want = observed[(observed["time"] >= start) & (observed["time"] < end)]
    assert [p["value"] for p in part["points"]] == want["value"].tolist()
    temp = client.get(f"/units/{api_world.district}/series", params={"variable": "temperature", "freq": "D"}).json()
    assert temp["unit_of_measure"] == "degC" and len(temp["points"]) > 0
    assert client.get(f"/units/{api_world.district}/series", params={"variable": "nope"}).status_code == 404
    assert client.get(f"/units/{api_world.district}/series", params={"freq": "fortnightly"}).status_code == 422
    bad = client.get(f"/units/{api_world.district}/series", params={"start": end.isoformat(), "end": start.isoformat()})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


def test_predictions_filters(client, api_world: ApiWorld) -> None:
    with Twin.connect(api_world.url, migrate=False) as twin:
        stored = twin.store.predictions(variable="people")
    h = as_role(api_world, "viewer")
    every = client.get("/predictions", headers=h, params={"limit": 1000}).json()
    assert every["numberReturned"] == min(1000, len(stored))
    city = client.get("/predictions", headers=h, params={"level": "city"}).json()["predictions"]
    want = stored[stored["level"] == "city"]
    assert [p["value"] for p in city] == want["value"].tolist()
    assert {p["run_id"] for p in city} == {api_world.run_id}
    assert all(p["q10"] is None and p["q50"] is None and p["q90"] is None for p in city)  # the run stored none
    one = client.get("/predictions", headers=h, params={"code": api_world.building, "horizon": 2}).json()
    assert [(p["code"], p["horizon"]) for p in one["predictions"]] == [(api_world.building, 2)]
    issued = client.get("/predictions", headers=h, params={
        "level": "district", "issued_at": api_world.issued_at.isoformat(), "run_id": api_world.run_id,
        "variable": "people"}).json()["predictions"]
    assert len(issued) == 3 * len(stored[stored["level"] == "district"]["code"].unique())
    none = client.get("/predictions", headers=h, params={"level": "district", "run_id": api_world.run_id + 99}).json()
    assert none["predictions"] == []
    later = client.get("/predictions", headers=h, params={
        "level": "city", "issued_at": (api_world.issued_at + pd.Timedelta("5h")).isoformat()}).json()
    assert later["predictions"] == []
    paged = client.get("/predictions", headers=h, params={"level": "floor", "limit": 4}).json()
    assert paged["numberReturned"] == 4
    assert PredictionPage.model_validate(paged).model_dump(mode="json", exclude_none=True)["links"] == paged["links"]
    nxt = [link["href"] for link in paged["links"] if link["rel"] == "next"][0]
    second = client.get(nxt, headers=h).json()["predictions"]
    floors = stored[stored["level"] == "floor"]
    assert [(p["code"], p["horizon"]) for p in second] == list(zip(floors["code"], floors["horizon"]))[4:8]
    assert client.get("/predictions", params={"level": "planet"}).status_code == 404
    assert client.get("/predictions", params={"variable": "nope"}).status_code == 404


def test_risk_ranked(client, api_world: ApiWorld) -> None:
    body = client.get("/risk", params={"level": "building", "horizon": 1, "min_risk": 0.0}).json()
    risks = [r["risk"] for r in body]
    assert risks == sorted(risks, reverse=True) and all(r["level"] == "building" for r in body)
    high = client.get("/risk", params={"level": "building", "min_risk": 0.5}).json()
    assert all(r["risk"] >= 0.5 for r in high)
    one = client.get("/risk", params=[("code", api_world.building), ("horizon", "3")]).json()
    assert [(r["code"], r["horizon"]) for r in one] == [(api_world.building, 3)]
    assert (one[0]["q10"], one[0]["q50"], one[0]["q90"]) == (None, None, None)


def test_alerts_list_filter_acknowledge(client, api_world: ApiWorld) -> None:
    everything = client.get("/alerts").json()
    assert len(everything) == 2
    assert [a["code"] for a in client.get("/alerts", params={"level": "district"}).json()] == [api_world.district]
    assert [a["severity"] for a in client.get("/alerts", params={"severity": "warning"}).json()] == ["warning"]
    by_code = client.get("/alerts", params={"code": api_world.building}).json()
    assert [a["code"] for a in by_code] == [api_world.building]
    target = by_code[0]["id"]
    assert client.post(f"/alerts/{target}/acknowledge", headers=as_role(api_world, "viewer")).status_code == 403
    assert client.post(f"/alerts/{target}/acknowledge").status_code == 403
    ack = client.post(f"/alerts/{target}/acknowledge", headers=as_role(api_world, "operator"))
    assert ack.status_code == 200
    assert ack.json()["acknowledged_by"] == "operator test" and ack.json()["acknowledged_at"]
    assert ack.json()["state"] == "acknowledged" and ack.json()["until"] == ack.json()["time"]
    open_ = client.get("/alerts", params={"open": True}).json()
    assert [a["code"] for a in open_] == [api_world.district]
    assert client.post("/alerts/999999/acknowledge", headers=as_role(api_world, "operator")).status_code == 404
    # open → acknowledged → resolved, with who did what
    live = client.get("/alerts", params={"state": "live"}).json()
    assert [a["code"] for a in live] == [api_world.district, api_world.building]
    district = live[0]["id"]
    assert client.post(f"/alerts/{district}/resolve", headers=as_role(api_world, "viewer")).status_code == 403
    done = client.post(f"/alerts/{district}/resolve", headers=as_role(api_world, "operator"),
                       params={"note": "stewards sent"}).json()
    assert done["state"] == "resolved" and done["resolved_by"] == "operator test" and done["resolved_at"]
    assert [a["id"] for a in client.get("/alerts", params={"state": "resolved"}).json()] == [district]
    assert [a["code"] for a in client.get("/alerts", params={"state": "live"}).json()] == [api_world.building]
    events = client.get(f"/alerts/{district}/history").json()
    assert [(e["event"], e["by"], e["note"]) for e in events] == [
        ("opened", None, ""), ("resolved", "operator test", "stewards sent")]
    assert [e["event"] for e in client.get(f"/alerts/{target}/history").json()] == ["opened", "acknowledged"]
    assert client.get("/alerts/999999/history").status_code == 404
    assert client.get("/alerts", params={"state": "gone"}).status_code == 422


def test_scenario_event_closure_weather_holiday(client, api_world: ApiWorld) -> None:
    h = as_role(api_world, "operator")
    t1 = (api_world.issued_at + pd.Timedelta("1h")).isoformat()
    event = client.post("/scenarios", headers=h, json={
        "issued_at": api_world.issued_at.isoformat(), "horizons": 3,
        "event": {"code": api_world.building, "time": t1, "people": 400, "hours": 1}}).json()
    assert event["model"] in ("historical_average", "tower") or event["model"]
    city = api_world.building.split("/")[0]
    rows = {(u["code"], u["horizon"]): u for u in event["units"]}
    assert rows[(city, 1)]["delta"] == 400.0 or abs(rows[(city, 1)]["delta"] - 400.0) < 1e-6
    assert (city, 2) not in rows or abs(rows[(city, 2)]["delta"]) < 1e-6
    assert abs(rows[(api_world.building, 1)]["delta"] - 400.0) < 1e-6
    assert {u["level"] for u in event["units"]} == {"floor", "building", "grid", "district", "city"}
    closure = client.post("/scenarios", headers=h, json={
        "issued_at": api_world.issued_at.isoformat(), "horizons": 2, "closure": {"code": api_world.building},
        "levels": ["building"]}).json()
    closed = [u for u in closure["units"] if u["code"] == api_world.building]
    assert closed and all(u["scenario"] == 0.0 for u in closed)
    assert {u["level"] for u in closure["units"]} == {"building"}
    holiday = client.post("/scenarios", headers=h, json={
        "issued_at": api_world.issued_at.isoformat(), "horizons": 2, "holiday": True, "levels": ["city"]}).json()
    assert holiday["totals"] and all(t["level"] == "city" for t in holiday["totals"])
    weather = client.post("/scenarios", headers=h, json={
        "issued_at": api_world.issued_at.isoformat(), "horizons": 2, "weather": {"rain": 8.0, "temperature": 2.0},
        "levels": ["city"]}).json()
    assert weather["totals"][0]["scenario"] != weather["totals"][0]["baseline"]
    assert client.post("/scenarios", json={"holiday": True}).status_code == 403
    assert client.post("/scenarios", headers=h, json={"horizons": 2}).status_code == 422
    assert client.post("/scenarios", headers=h, json={"closure": {"code": "tiny/none"}}).status_code == 404
    assert client.post("/scenarios", headers=h, json={"holiday": True, "horizons": 500}).status_code == 422


def test_ogc_collections_and_items(client, api_world: ApiWorld) -> None:
    cols = client.get("/collections").json()["collections"]
    assert [c["id"] for c in cols] == ["floor", "building", "grid", "district", "city"]
    assert len(cols[1]["extent"]["spatial"]["bbox"][0]) == 4
    assert client.get("/collections/building").json()["id"] == "building"
    assert client.get("/collections/planet").status_code == 404
    r = client.get("/collections/building/items", params={"limit": 3, "offset": 2})
    assert r.headers["content-type"].startswith("application/geo+json")
    page = r.json()
    assert page["numberReturned"] == 3 and page["numberMatched"] == 16
    assert {"self", "next", "prev", "collection"} <= {link["rel"] for link in page["links"]}
    item = client.get(f"/collections/building/items/{api_world.building}").json()
    assert item["id"] == api_world.building and item["type"] == "Feature"
    assert client.get(f"/collections/district/items/{api_world.building}").status_code == 404
    box = client.get("/collections/building/items", params={"bbox": "0,0,1,1"}).json()
    assert box["numberMatched"] == 0 and box["features"] == []


def test_tiles_carry_current_and_forecast(client, api_world: ApiWorld) -> None:
    geom = shapely.geometry.shape(client.get(f"/units/{api_world.building}").json()["geometry"])
    p = geom.representative_point()
    for z in (12, 14):
        x, y = tile_of(p.x, p.y, z)
        r = client.get(f"/tiles/building/{z}/{x}/{y}.mvt", headers=as_role(api_world, "viewer"))
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
        layer = mapbox_vector_tile.decode(r.content)["building"]
        props = {f["properties"]["code"]: f["properties"] for f in layer["features"]}
        assert api_world.building in props
        mine = props[api_world.building]
        assert "current" in mine and "forecast" in mine and "forecast_risk" in mine
    with Twin.connect(api_world.url, migrate=False) as twin:
        pred = twin.store.predictions(codes=[api_world.building], horizon=1)
    assert abs(mine["forecast"] - pred["value"].iloc[0]) < 1e-6
    empty = client.get("/tiles/building/14/0/0.mvt")
    assert empty.status_code == 200 and empty.content == b""
    assert client.get("/tiles/building/3/9/0.mvt").status_code == 422
    assert client.get("/tiles/planet/3/1/1.mvt").status_code == 404


def _eventually(fetch, ok, *, seconds: float = 5.0):
    """Poll ``fetch()`` until ``ok(result)`` (calls are recorded just after their answer is sent)."""
    deadline = time.monotonic() + seconds
    while True:
        got = fetch()
        if ok(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_health_metrics_usage(client, api_world: ApiWorld) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["database"] is True
    h = as_role(api_world, "finance")
    client.get("/levels", headers=h)
    client.get("/levels", headers=h)
    usage = _eventually(lambda: client.get("/usage", headers=h).json(),
                        lambda rows: any(u["endpoint"] == "/levels" and u["calls"] >= 2 for u in rows))
    mine = {u["endpoint"]: u["calls"] for u in usage}
    assert mine["/levels"] >= 2 and {u["key_id"] for u in usage} == {api_world.key_ids["finance"]}
    client.get("/levels", headers=as_role(api_world, "security"))
    everyone = _eventually(lambda: client.get("/usage", headers=as_role(api_world, "admin")).json(),
                           lambda rows: api_world.key_ids["security"] in {u["key_id"] for u in rows})
    assert {api_world.key_ids["finance"], api_world.key_ids["security"]} <= {u["key_id"] for u in everyone}
    metrics = client.get("/metrics").text
    assert 'ciu_api_requests_total{endpoint="/levels",method="GET",status="200"}' in metrics
    assert client.get("/usage").status_code == 403


def test_openapi_is_complete_with_examples(client) -> None:
    spec = client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            assert "200" in op["responses"], (method, path)
            problems = [c for c in op["responses"] if c.startswith(("4", "5"))]
            assert problems, (method, path)
            for code in problems:
                if (path, code) == ("/health", "503"):  # health answers its own document
                    continue
                assert "application/problem+json" in op["responses"][code]["content"], (method, path, code)
    schemas = spec["components"]["schemas"]
    for name in ("Feature", "ScenarioRequest", "Series"):
        assert "example" in schemas[name], name
    assert any("examples" in p.get("schema", {}) or "examples" in p for p in
               spec["paths"]["/units"]["get"]["parameters"])


def test_a_scenario_past_its_time_is_cancelled_and_frees_its_worker(api_world: ApiWorld) -> None:
    from psycopg_pool import ConnectionPool

    from ciu.api.scenarios import ScenarioRunner
    from ciu.errors import TimeLimitExceeded

    with ConnectionPool(api_world.url, min_size=1, max_size=2, open=False) as pool:
        runner = ScenarioRunner(pool, workers=1, timeout_s=0.001)
        try:
            with pytest.raises(TimeLimitExceeded):
                runner.run("people", None, 3, {"holiday": True})
            runner.timeout_s = 120.0  # the one worker is free for the next planner
            base, what, name, issued, horizons = runner.run("people", None, 3, {"holiday": True})
            assert horizons == 3 and len(base) == len(what) > 0 and name
        finally:
            runner.close()
