"""``ciu ingest``, ``ciu info`` and ``ciu sources`` on a real PostGIS."""

from __future__ import annotations

import numpy as np
import shapely
from typer.testing import CliRunner

from ciu.cli import app
from tests.ingest_files import footprints, write_vector


def test_ingest_then_info_and_sources(city, city_url, tmp_path, monkeypatch):
    cells = city.units(level="grid")
    pts = shapely.point_on_surface(np.asarray(cells.geometry.values, dtype=object))[:2]
    path = write_vector(footprints([(p.x, p.y) for p in pts]).to_crs(2263), tmp_path / "b.gpkg")
    monkeypatch.setenv("CIU_DATABASE_URL", city_url)
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(path), "--level", "building", "--key", "bid", "--floors"])
    assert first.exit_code == 0, first.output
    assert "9 new, 0 unchanged" in first.output  # 2 buildings, 3 + 4 floors
    again = runner.invoke(app, ["ingest", str(path), "--level", "building", "--key", "bid", "--floors"])
    assert again.exit_code == 0 and "already loaded" in again.output
    info = runner.invoke(app, ["info"])
    assert info.exit_code == 0
    assert "sources per level:" in info.output
    assert any(line.split()[:1] == ["building"] and str(path) in line for line in info.output.splitlines())
    listing = runner.invoke(app, ["sources"])
    assert str(path) in listing.output and "ingest.vector 1" in listing.output
