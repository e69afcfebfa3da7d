"""notebooks/04_views.ipynb runs top to bottom against a real twin, offline."""

from __future__ import annotations

from tests.notebooks.test_notebooks import NOTEBOOKS, run_notebook


def test_views_notebook(city_url, city, monkeypatch):
    nb = run_notebook(NOTEBOOKS / "04_views.ipynb", city_url, monkeypatch)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "remote references: 0" in text
    assert f"floor.parquet    {len(city.units(level='floor')):5d} units" in text
    assert f"'BuildingStorey': {len(city.units(level='floor'))}" in text
