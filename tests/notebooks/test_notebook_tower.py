"""The tower notebook runs from top to bottom on a short training run."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "03_tower_model.ipynb"


def test_tower_notebook_runs(monkeypatch):
    monkeypatch.setenv("CIU_NOTEBOOK_STEPS", "3")
    monkeypatch.setenv("CIU_NOTEBOOK_EPOCHS", "2")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    text = "".join(o.get("text", "") for o in outputs)
    assert "{'zone': 69, 'district': 12, 'city': 1}" in text
    assert "max |district - sum of its zones|" in text
