"""Both pages of the dashboard in headless Chromium, offline, against a real twin."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from ciu.twin import Twin
from ciu.viz.app import create_dashboard
from ciu.viz.data import DashboardData
from ciu.viz.figures import skill_rows
from ciu.viz.settings import DashboardSettings
from tests.browser import SCREENSHOTS, browser_page, painted_fraction
from tests.viz.conftest import serving


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)


def _changed(a: bytes, b: bytes) -> float:
    """Share of pixels that differ between two screenshots of the same element."""
    return float((np.abs(_pixels(a) - _pixels(b)).sum(axis=2) > 30).mean())


def _wait_drawn(page, rendered_id: str, prefix: str) -> None:
    page.wait_for_function(
        "([id, p]) => { const e = document.getElementById(id); return e && e.textContent.startsWith(p) }",
        arg=[rendered_id, prefix], timeout=30_000)
    page.wait_for_timeout(1200)  # let deck.gl draw the frame


def _click_unit(page, map_id: str, code: str, *, shows: str) -> None:
    """Click where the map draws the unit ``code`` until the page shows it (``shows``: a JavaScript test).

    A real click: deck.gl picks what is under it. Its tap recogniser now and then lets the first click
    on a freshly drawn map pass unpicked (the DOM sees it, deck.gl does not), so a second try is allowed.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    xy = page.evaluate("([m, c]) => window.ciu.screenOf(m, c)", [map_id, code])
    box = page.locator("#" + map_id).bounding_box()
    for attempt in range(2):
        page.mouse.click(box["x"] + xy[0], box["y"] + xy[1])
        try:
            page.wait_for_function(shows, timeout=10_000 if attempt == 0 else 30_000)
            return
        except PlaywrightTimeout:
            if attempt == 1:
                raise


def _set(page, component: str, value) -> None:
    page.evaluate("([id, v]) => window.dash_clientside.set_props(id, {value: v})", [component, value])


@pytest.mark.browser
def test_dashboard_pages_offline(city_url, city, published):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    app = create_dashboard(DashboardSettings(history_hours=12, refresh_s=600), twin=Twin.connect(city_url,
                                                                                               migrate=False))
    with serving(app) as url, browser_page(width=1400, height=1000) as (page, log):
        # -- operations: painted, level switch, time slider, unit panel, acknowledge ---------------
        page.goto(url + "/")
        _wait_drawn(page, "ops-rendered", "district:all@")
        ops_map = page.locator("#ops-map")
        districts = ops_map.screenshot()
        page.screenshot(path=str(SCREENSHOTS / "dashboard-operations.png"))
        assert painted_fraction(districts) > 0.05, "the 2D map looks blank"

        page.get_by_label("grid").check()
        _wait_drawn(page, "ops-rendered", "grid:all@")
        grid = ops_map.screenshot(path=str(SCREENSHOTS / "dashboard-operations-grid.png"))
        assert _changed(districts, grid) > 0.02, "switching level drew the same picture"

        before = page.locator("#ops-time-label").inner_text()
        _set(page, "ops-time", 14)  # two hours into the forecast
        _wait_drawn(page, "ops-rendered", "grid:all@14")
        later = ops_map.screenshot(path=str(SCREENSHOTS / "dashboard-operations-forecast.png"))
        assert "forecast +3 h" in page.locator("#ops-time-label").inner_text() != before
        assert _changed(grid, later) > 0.005, "moving the time slider left the colours as they were"

        # the baseline forecasts: said plainly beside the chart, drawn without a band
        page.wait_for_function("document.getElementById('ops-skill-title').textContent.includes('grid level')",
                               timeout=30_000)
        assert page.locator(".skill-forecast-by").inner_text() == "historical average (baseline)"
        assert "no model of people has been trained" in page.locator(".skill-test-scores").inner_text()
        cell = city.units(level="building")["parent_code"].iloc[0]
        _click_unit(page, "ops-map", cell,
                    shows="document.getElementById('ops-unit-title').textContent.includes('(grid)')")
        page.wait_for_selector("#ops-unit-chart .scatterlayer .trace", timeout=30_000)
        assert page.locator("#ops-unit-chart .scatterlayer .trace").count() == 2  # observed, forecast
        assert "p10–p90" not in page.locator("#ops-unit-chart .legend").text_content()
        page.locator("#ops-drill").click()  # drill down: the buildings of the clicked grid cell
        _wait_drawn(page, "ops-rendered", f"building:{cell}@")
        assert page.locator("#ops-path").inner_text() == f"buildings in {cell}"
        assert page.get_by_label("building").is_checked()
        page.mouse.move(0, 0)  # no hover highlight in the picture
        page.wait_for_timeout(300)
        ops_map.screenshot(path=str(SCREENSHOTS / "dashboard-operations-drilled.png"))

        ack = page.locator("button.ack").first
        button_id = ack.get_attribute("id")
        alert_id = json.loads(button_id)["index"]
        ack.click()
        page.wait_for_function("id => ![...document.querySelectorAll('button.ack')].some(b => b.id === id)",
                               arg=button_id, timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-operations-acknowledged.png"))

        # -- planner: 3D floors, card of a clicked floor, scenario difference --------------------------
        page.get_by_role("link", name="Planner").click()
        _wait_drawn(page, "plan-rendered", "floor@")
        plan_map = page.locator("#plan-map")
        floors_png = plan_map.screenshot()
        assert painted_fraction(floors_png) > 0.05, "the 3D view looks blank"

        floors = city.units(level="floor")
        top = floors.sort_values("z_max").index[-1]
        _click_unit(page, "plan-map", top, shows="document.querySelector('.f-id') !== null")
        clicked = page.locator(".f-id").inner_text()
        assert clicked.startswith(city.unit(top).parent_code + "/f"), clicked
        assert page.locator(".f-tax-status").inner_text() == "restricted"
        assert "people of" in page.locator(".f-flow").inner_text()
        page.screenshot(path=str(SCREENSHOTS / "dashboard-planner.png"))

        page.locator("#scn-run").click()
        _wait_drawn(page, "scn-rendered", "scenario:")
        diff_text = page.locator(".scn-3").inner_text()
        assert diff_text.startswith("+") and diff_text != "+0"
        changed = page.locator("tr.scn-unit")  # the per-unit table: the upper levels first, each with its change
        assert changed.count() >= 2, page.locator("#scn-units").inner_text()
        first = changed.first.locator("td")
        assert first.nth(1).inner_text() == "city" and first.nth(5).inner_text().startswith("+")
        diff_png = page.locator("#scn-map").screenshot()
        assert painted_fraction(diff_png) > 0.05
        page.screenshot(path=str(SCREENSHOTS / "dashboard-planner-scenario.png"), full_page=True)

    app.server.config["ciu_data"].close()
    assert log.external_requests == []
    assert log.console_errors == []
    stored = city.store.alerts().set_index("id").loc[alert_id]
    assert stored["acknowledged_at"] is not None and stored["acknowledged_by"] == "dashboard"


@pytest.mark.browser
def test_champion_forecast_shows_its_band_and_skill(city_url, city, champion):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    best = champion["metrics"]["champion"]
    expected = {level: dict(skill_rows(DashboardData(city).skill(level))) for level in ("district", "floor")}
    app = create_dashboard(DashboardSettings(history_hours=12, refresh_s=600), twin=Twin.connect(city_url,
                                                                                               migrate=False))
    with serving(app) as url, browser_page(width=1400, height=1000) as (page, log):
        page.goto(url + "/")
        _wait_drawn(page, "ops-rendered", "district:all@")
        page.wait_for_selector(".skill-test-rmse", timeout=30_000)
        assert page.locator("#ops-skill-title").inner_text() == "Forecast · district level"
        shown = {"forecast by": ".skill-forecast-by", "test RMSE": ".skill-test-rmse",
                 "vs seasonal naive": ".skill-vs-seasonal-naive", "p10–p90 coverage": ".skill-p10-p90-coverage"}
        assert {k: page.locator(sel).inner_text() for k, sel in shown.items()} == expected["district"]
        assert page.locator(".skill-forecast-by").inner_text() == f"{best} (model run {champion['run_id']})"

        district = city.units(level="district").index[0]
        _click_unit(page, "ops-map", district,
                    shows="document.getElementById('ops-unit-title').textContent.includes('(district)')")
        page.wait_for_selector("#ops-unit-chart .scatterlayer .trace .fills path", timeout=30_000)
        assert page.locator("#ops-unit-chart .scatterlayer .trace").count() == 4  # observed, p90, band, forecast
        assert "p10–p90" in page.locator("#ops-unit-chart .legend").text_content()
        band = page.locator("#ops-unit-chart .scatterlayer .trace .fills path").first
        assert band.get_attribute("d").count("L") >= 3  # a closed area over the three forecast hours
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-operations-champion.png"), full_page=True)
        chart = page.locator("#ops-unit-chart").screenshot(path=str(SCREENSHOTS / "dashboard-unit-band.png"))
        assert painted_fraction(chart) > 0.05

        # the planner's card names the model behind the floor's forecast; a scenario keeps to its horizons
        page.get_by_role("link", name="Planner").click()
        _wait_drawn(page, "plan-rendered", "floor@")
        floors = city.units(level="floor")
        _click_unit(page, "plan-map", floors.sort_values("z_max").index[-1],
                    shows="document.querySelector('.f-forecast-by') !== null")
        assert page.locator(".f-forecast-by").inner_text() == expected["floor"]["forecast by"]
        assert page.locator(".f-test-rmse").inner_text() == expected["floor"]["test RMSE"]
        assert page.locator("#scn-hours").get_attribute("max") == "3"
        assert "forecasts 3 hours ahead" in page.locator("#scn-horizons").inner_text()
        page.locator("#scn-run").click()
        _wait_drawn(page, "scn-rendered", "scenario:")
        assert page.locator(".scn-7").inner_text() == best
        page.screenshot(path=str(SCREENSHOTS / "dashboard-planner-champion.png"), full_page=True)
    app.server.config["ciu_data"].close()
    assert log.external_requests == []
    assert log.console_errors == []


@pytest.mark.browser
def test_dashboard_pages_for_a_variable_without_capacity(city_url):
    from ciu.viz.data import publish_forecast
    from tests.test_any_target import add_trips

    twin = Twin.connect(city_url, migrate=False)
    add_trips(twin)
    publish_forecast(twin, variable="trips", horizons=6)
    app = create_dashboard(DashboardSettings(variable="trips", history_hours=12, refresh_s=600), twin=twin)
    with serving(app) as url, browser_page(width=1400, height=1000) as (page, log):
        page.goto(url + "/")
        _wait_drawn(page, "ops-rendered", "district:all@")
        assert painted_fraction(page.locator("#ops-map").screenshot()) > 0.05
        page.screenshot(path=str(SCREENSHOTS / "dashboard-operations-trips.png"))
        assert page.locator(".kpi-label").first.inner_text() == "trips"
        assert "28-day peak" in page.locator(".map-wrap .legend").first.inner_text()
        assert page.get_by_label("grid").count() == 1 and page.get_by_label("floor").count() == 0
        page.get_by_role("link", name="Planner").click()
        _wait_drawn(page, "plan-rendered", "grid@")
        assert painted_fraction(page.locator("#plan-map").screenshot()) > 0.05
    twin.close()
    assert log.external_requests == []
    assert log.console_errors == []
