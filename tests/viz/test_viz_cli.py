"""``ciu dashboard publish`` and ``ciu export …`` against a real twin."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ciu.cli import app


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_publish_and_exports(city_url, city, tmp_path, monkeypatch):
    monkeypatch.setenv("CIU_DATABASE_URL", city_url)
    out = invoke("dashboard", "publish", "--horizons", "3", "--threshold", "0.5")
    assert "historical_average" in out and f"{3 * sum(city.store.count_units().values()):,} forecasts" in out
    assert len(city.store.predictions(variable="people")) == 3 * sum(city.store.count_units().values())
    invoke("export", "geoparquet", "--out", str(tmp_path / "gp"))
    assert sorted(p.stem for p in (tmp_path / "gp").glob("*.parquet")) == sorted(city.levels)
    invoke("export", "cityjson", "--out", str(tmp_path / "c.city.json"))
    assert json.loads((tmp_path / "c.city.json").read_text())["type"] == "CityJSON"
    invoke("export", "cesium", "--out", str(tmp_path / "cz"))
    assert (tmp_path / "cz" / "cesium" / "Cesium.js").is_file() and (tmp_path / "cz" / "floors.czml").is_file()
    invoke("export", "kepler", "--out", str(tmp_path / "k"), "--level", "district")
    assert len(json.loads((tmp_path / "k" / "kepler.json").read_text())["datasets"][0]["data"]["allData"]) == len(
        city.units(level="district"))
    assert (tmp_path / "k" / "index.html").is_file() and (tmp_path / "k" / "kepler" / "keplergl.min.js").is_file()
