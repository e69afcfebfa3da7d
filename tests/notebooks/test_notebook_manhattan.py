"""The Manhattan notebook runs top to bottom against a real twin."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ciu.ingest.nyc import build_nyc
from ciu.twin import Twin
from tests.conftest import SHARED_DATA

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_manhattan.ipynb"


def test_manhattan_notebook_executes(db_url, monkeypatch, tmp_path):
    twin = Twin.connect(db_url, migrate=False)
    try:
        build_nyc(twin, SHARED_DATA / "nyc", hours=72)
        expected_total = twin.observations("bike_departures", level="grid")["value"].sum()
    finally:
        twin.close()
    monkeypatch.setenv("CIU_DATABASE_URL", db_url)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    texts = " ".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert str(int(expected_total)) in texts.replace(".0", "")
    assert "nybb.shp" in texts
