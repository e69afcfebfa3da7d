"""Exports: GeoParquet per level, CityJSON with storeys, Cesium CZML + offline viewer, kepler.gl map file."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest

from bench.viz import QuietHandler
from tests.browser import SCREENSHOTS, browser_page, painted_fraction
from viz.export import czml, export_cesium, export_cityjson, export_geoparquet, export_kepler, read_geoparquet


def test_geoparquet_per_level_reads_back(city, tmp_path):
    paths = export_geoparquet(city, tmp_path)
    counts = city.store.count_units()
    assert sorted(p.stem for p in paths) == sorted(city.levels)
    for path in paths:
        frame = read_geoparquet(path)
        assert len(frame) == counts[path.stem]
        assert frame.crs.to_epsg() == 4326 and frame.geometry.is_valid.all()
        assert "restricted" not in frame.columns
    floors = read_geoparquet(tmp_path / "floor.parquet").set_index("code")
    stored = city.units(level="floor")
    code = stored.index[0]
    assert floors.loc[code, "attrs"] == stored.loc[code, "attrs"]
    assert floors.loc[code, "z_min"] == stored.loc[code, "z_min"]


def _closed_and_oriented(shell: list[list[list[int]]]) -> bool:
    """Every edge of a shell is used exactly twice, once in each direction (closed, consistently oriented)."""
    from collections import Counter

    edges = Counter()
    for surface in shell:
        ring = surface[0]
        for a, b in zip(ring, ring[1:] + ring[:1]):
            edges[(a, b)] += 1
    return all(n == 1 and edges.get((b, a)) == 1 for (a, b), n in edges.items())


def test_cityjson_has_storeys_and_is_well_formed(city, tmp_path):
    from cjio import cityjson as cj

    path = export_cityjson(city, tmp_path / "city.city.json")
    doc = json.loads(path.read_text())
    objects = doc["CityObjects"]
    storeys = [o for o in objects.values() if o["type"] == "BuildingStorey"]
    assert len(storeys) == len(city.units(level="floor"))
    assert sum(o["type"] == "Building" for o in objects.values()) == len(city.units(level="building"))
    n_vertices = len(doc["vertices"])
    for oid, obj in objects.items():
        if obj["type"] == "BuildingStorey":
            assert oid in objects[obj["parents"][0]]["children"]
        for geom in obj["geometry"]:
            assert geom["type"] == "Solid" and geom["lod"] == "1"
            shell = geom["boundaries"][0]
            assert all(0 <= i < n_vertices for surface in shell for i in surface[0])
            assert _closed_and_oriented(shell), oid
    with path.open() as f:  # cjio reads it as CityJSON 2.0 in the city's UTM zone
        model = cj.reader(f)
    assert model.get_version() == "2.0"
    assert model.get_epsg() == city.units(level="building").estimate_utm_crs().to_epsg()
    info = "\n".join(model.get_info(long=True))
    assert "BuildingStorey" in info and f"BuildingStorey ({len(storeys)})" in info


def test_czml_floors_are_extruded_between_their_heights(city):
    doc = czml(city)
    floors = city.units(level="floor")
    packets = {p["id"]: p for p in doc[1:] if not p["id"].startswith("base/")}
    assert doc[0]["id"] == "document" and len(packets) == len(floors)
    assert sum(p["id"].startswith("base/") for p in doc) == len(city.units(level="district"))
    code = floors.sort_values("z_min").index[-1]
    poly = packets[code]["polygon"]
    assert poly["height"] == pytest.approx(floors.loc[code, "z_min"])
    assert poly["height"] < poly["extrudedHeight"] <= floors.loc[code, "z_max"]


def test_kepler_map_file(city, tmp_path):
    path = export_kepler(city, tmp_path / "k.json", level="building")
    doc = json.loads(path.read_text())
    data = doc["datasets"][0]["data"]
    assert len(data["allData"]) == len(city.units(level="building"))
    assert [f["name"] for f in data["fields"]][-1] == "_geojson"
    assert doc["config"]["version"] == "v1"
    assert doc["config"]["config"]["visState"]["layers"][0]["config"]["dataId"] == data["id"]


@pytest.mark.browser
def test_cesium_page_renders_offline(city, tmp_path):
    page_path = export_cesium(city, tmp_path / "cesium")
    handler = functools.partial(QuietHandler, directory=str(page_path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with browser_page() as (page, log):
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
            page.wait_for_function("window.ciuReady === true", timeout=60_000)
            page.wait_for_timeout(1500)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            png = page.screenshot(path=str(SCREENSHOTS / "export-cesium.png"))
            entities = page.evaluate("window.ciuEntities")
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    assert entities == len(city.units(level="floor"))
    assert log.external_requests == []
    assert log.console_errors == []
    assert painted_fraction(png) > 0.05
