"""Exports: GeoParquet per level, CityJSON with storeys, Cesium CZML + offline viewer, kepler.gl map + offline page."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.viz import serving_directory
from ciu.viz.export import czml, export_cesium, export_cityjson, export_geoparquet, export_kepler, read_geoparquet
from tests.browser import SCREENSHOTS, browser_page, painted_fraction


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


#: where set-up puts the official CityJSON 2.0 schema (scripts/cityjson_schema.py)
CITYJSON_SCHEMA = Path(sys.prefix) / "share" / "cityjson" / "2.0.0" / "cityjson.schema.json"


def test_cityjson_validates_against_the_official_schema(city, tmp_path):
    from jsonschema.validators import validator_for

    assert CITYJSON_SCHEMA.is_file(), f"{CITYJSON_SCHEMA} is missing: `make setup` writes it"
    schema = json.loads(CITYJSON_SCHEMA.read_text())
    assert schema["$id"] == "https://www.cityjson.org/schemas/2.0.0/cityjson.schema.json"
    validator = validator_for(schema)(schema)  # draft-07, as the schema declares
    doc = json.loads(export_cityjson(city, tmp_path / "city.city.json", include_restricted=True).read_text())
    assert doc["version"] == "2.0"
    assert [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)] == []
    storey = next(o for o in doc["CityObjects"].values() if o["type"] == "BuildingStorey")
    del storey["parents"]  # a storey must name its building: the schema does catch it
    assert not validator.is_valid(doc)


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


def test_kepler_map_file_and_page(city, tmp_path):
    page = export_kepler(city, tmp_path / "kepler", level="building")
    doc = json.loads((page.parent / "kepler.json").read_text())
    data = doc["datasets"][0]["data"]
    assert len(data["allData"]) == len(city.units(level="building"))
    assert [f["name"] for f in data["fields"]][-1] == "_geojson"
    assert doc["config"]["version"] == "v1"
    assert doc["config"]["config"]["visState"]["layers"][0]["config"]["dataId"] == data["id"]
    assert doc["config"]["config"]["mapStyle"] == {"styleType": "no_map"}
    html = page.read_text()
    loads = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert loads and all(url.startswith("kepler/") and (page.parent / url).is_file() for url in loads)
    assert "https://" not in html
    embedded = json.loads(re.search(r'id="ciu-map">(.*?)</script>', html, re.S).group(1))
    assert embedded["datasets"] == json.loads(json.dumps(doc["datasets"]))
    assert embedded["config"]["config"]["mapStyle"] == {"styleType": "ciu-districts"}


@pytest.mark.browser
def test_cesium_page_renders_offline(city, tmp_path):
    page_path = export_cesium(city, tmp_path / "cesium")
    with serving_directory(page_path.parent) as url, browser_page() as (page, log):
        page.goto(f"{url}/index.html")
        page.wait_for_function("window.ciuReady === true", timeout=60_000)
        page.wait_for_timeout(1500)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        png = page.screenshot(path=str(SCREENSHOTS / "export-cesium.png"))
        entities = page.evaluate("window.ciuEntities")
    assert entities == len(city.units(level="floor"))
    assert log.external_requests == []
    assert log.console_errors == []
    assert painted_fraction(png) > 0.05


def vivid_fraction(png: bytes) -> float:
    """Share of strongly coloured pixels: kepler.gl's colour ramp, not the grey-blue base map or background."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    return float(((high > 80) & (high - low > 0.5 * high)).mean())


@pytest.mark.browser
def test_kepler_page_renders_offline(city, tmp_path):
    page_path = export_kepler(city, tmp_path / "kepler", level="building")
    map_area = {"x": 340, "y": 0, "width": 880, "height": 760}  # right of kepler.gl's side panel
    with serving_directory(page_path.parent) as url, browser_page() as (page, log):
        page.goto(f"{url}/index.html")
        page.wait_for_function("window.ciuReady === true", timeout=60_000)
        for _ in range(60):  # kepler.gl draws the layer a few frames after it holds the data
            drawn = vivid_fraction(page.screenshot(clip=map_area))
            if drawn > 0.002:
                break
            page.wait_for_timeout(500)
        page.wait_for_timeout(500)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        png = page.screenshot(path=str(SCREENSHOTS / "export-kepler.png"))
        state = page.evaluate("""() => {
          const map = window.ciuStore.getState().keplerGl.map;
          return {rows: Object.values(map.visState.datasets).map(d => d.dataContainer.numRows()),
                  layers: map.visState.layers.map(l => l.config.dataId), style: map.mapStyle.styleType};
        }""")
    assert state == {"rows": [len(city.units(level="building"))], "layers": ["ciu_building"],
                     "style": "ciu-districts"}
    assert drawn > 0.002
    assert painted_fraction(png) > 0.05
    assert log.external_requests == []
    assert log.console_errors == []
