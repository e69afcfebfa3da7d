"""The forecasting harness notebook runs top to bottom on the last weeks of Manhattan with a tiny budget."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "03_tower_model.ipynb"
MODELS = ("persistence", "seasonal_naive", "historical_average", "ridge_unit", "lightgbm", "tower")


def test_harness_notebook_runs(monkeypatch):
    monkeypatch.setenv("CIU_NOTEBOOK_MINUTES", "0.05")  # three seconds of tower training
    monkeypatch.setenv("CIU_NOTEBOOK_WEEKS", "6")
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])], "stored with outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    tables = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]

    assert "{'zone': 69, 'district': 12, 'city': 1} channels: ['departures', 'arrivals']" in text
    assert "1008 hours, 2020-11-20 00:00:00 to 2020-12-31 23:00:00" in text  # the last six weeks

    epochs, seconds, stopped = re.search(r"tower: (\d+) epochs in (\d+) s, stopped by (\w+)", text).groups()
    assert int(epochs) >= 1 and int(seconds) < 30 and stopped in ("budget", "patience", "epochs")

    # the champion is the candidate on top of the validation comparison (lowest score)
    champion = re.search(r"^champion: (\w+)$", text, re.M).group(1)
    assert champion in (*MODELS, "blend")
    validation = next(t for t in tables if t.splitlines()[0].split() == ["zone", "district", "city", "score"])
    assert validation.splitlines()[1].split()[0] == champion
    assert {line.split()[0] for line in validation.splitlines()[1:]} >= set(MODELS)

    # the test skill table: every model at every level and hour ahead
    skill = next(t for t in tables if "gain_over_seasonal_naive_pct" in t)
    for name in MODELS:
        assert len(re.findall(rf"^\d+ +{name} +(zone|district|city) +[123] ", skill, re.M)) == 9
    assert any("coverage_p10_p90" in t for t in tables)

    diff = float(re.search(r"max \|district - sum of its zones\|: (\S+)", text).group(1))
    assert diff < 1e-6
    assert float(re.search(r"max \|city - sum of its districts\|: (\S+)", text).group(1)) < 1e-6
