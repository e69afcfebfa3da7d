"""Notebooks are executed, top to bottom, against a real twin."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def run_notebook(path: Path, env_url: str, monkeypatch: pytest.MonkeyPatch, *, timeout: int = 300) -> nbformat.NotebookNode:
    monkeypatch.setenv("CIU_DATABASE_URL", env_url)
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def test_quickstart_notebook(city_url, monkeypatch):
    nb = run_notebook(NOTEBOOKS / "01_quickstart.ipynb", city_url, monkeypatch)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "ancestors: ['grid', 'district', 'city']" in text
