"""The offline 3D view: written from the twin, painted by headless Chromium, no network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.viz.deck import floor_records, ramp_colors, write_buildings_view
from tests.browser import SCREENSHOTS, browser_page, painted_fraction


def test_ramp_colours_are_ordered():
    colors = ramp_colors(np.array([0.0, 0.5, 1.0, np.nan]), vmax=1.0)
    assert colors.shape == (4, 4)
    assert colors[0, 2] > colors[2, 2]  # light yellow → dark red: blue channel falls
    assert list(colors[3, :3]) == [160, 160, 160]


def test_floor_records_stack_floors(city):
    floors = city.units(level="floor")
    people = pd.Series(1.0, index=floors.index)
    recs = floor_records(floors, people)
    assert len(recs) == len(floors)
    by_code = {r["code"]: r for r in recs}
    code = floors.index[1]
    assert by_code[code]["polygon"][0][0][2] == pytest.approx(floors.loc[code, "z_min"])
    assert by_code[code]["people"] == 1


@pytest.mark.browser
def test_view_renders_floors_offline(city, tmp_path):
    path, shown = write_buildings_view(city, tmp_path / "view.html")
    html = path.read_text()
    assert "https://" not in "".join(line for line in html.splitlines() if "<link" in line or "<script src" in line)
    with browser_page() as (page, log):
        page.goto(path.as_uri())
        page.wait_for_selector("canvas", timeout=30_000)
        page.wait_for_timeout(2500)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        png = page.screenshot(path=str(SCREENSHOTS / "sample-3d.png"))
    assert log.external_requests == []
    assert log.console_errors == []
    assert painted_fraction(png) > 0.05, "the 3D canvas looks blank"
    assert "floor" in shown
