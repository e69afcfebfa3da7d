"""The installed distribution: everything under the project's own ``ciu`` namespace, with its data files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_ingest_models_and_viz_under_ciu_only(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    skip = shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
    for name in ("ciu", "ingest", "models", "viz"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for path in [ROOT / "pyproject.toml", ROOT / "README.md", *ROOT.glob("LICEN[CS]E*")]:
        shutil.copy2(path, src / path.name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("ciu_twin-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = whl.read(meta).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"ciu"}, top
    for module in ("ciu/ingest/base.py", "ciu/models/tower.py", "ciu/viz/app.py", "ciu/viz/pages/operations.py",
                   "ciu/api/routes/data.py", "ciu/migrations/001_core.sql", "ciu/sql/api_current.sql",
                   "ciu/viz/assets/ciu.css"):
        assert module in names, module
    assert "[ciu.forecasters]" in entry_points and "ciu.models.forecaster:ChampionForecaster" in entry_points
