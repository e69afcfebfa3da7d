"""Pure builders of the dashboard's maps, charts and scenario numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.viz.data import run_skill
from ciu.viz.figures import card_rows, forecast_band, kpis, scenario_numbers, scenario_overrides, series_figure, skill_rows
from ciu.viz.layers import NO_CAPACITY, density_colors, difference_colors, floor_layer, frame_payload, unit_layer, view_of


def test_floors_sit_at_their_height(city):
    floors = city.units(level="floor")
    layer = floor_layer(floors)
    by_code = {d["code"]: d for d in layer["data"]}
    code = floors.sort_values("z_min").index[-1]
    ring = by_code[code]["polygon"][0]
    assert [p[2] for p in ring] == pytest.approx([floors.loc[code, "z_min"]] * len(ring), abs=0.01)
    assert by_code[code]["height"] == pytest.approx((floors.loc[code, "z_max"] - floors.loc[code, "z_min"]) * 0.92,
                                                    abs=0.01)
    assert layer["extruded"] is True and len(layer["data"]) == len(floors)


def test_colours_per_step_follow_density():
    density = np.array([[0.0, 1.0], [1.0, np.nan]])  # 2 units × 2 steps
    colors = np.array(density_colors(density))
    assert colors.shape == (2, 2, 4)
    assert colors[0, 0, 2] > colors[0, 1, 2]  # step 0: unit 0 empty (yellow) vs unit 1 full (red)
    assert list(colors[1, 1]) == NO_CAPACITY  # unknown → muted


def test_differences_are_diverging():
    c = np.array(difference_colors(np.array([-10.0, 0.0, 10.0])))
    assert c[0, 2] > c[0, 0] and c[2, 0] > c[2, 2]  # fewer → blue, more → red
    assert list(c[1, :3]) == [200, 200, 200]


def test_payload_carries_every_step(city):
    units = city.units(level="district")
    values = np.arange(len(units) * 3, dtype=float).reshape(len(units), 3)
    payload = frame_payload(unit_layer(units, reference=np.full(len(units), 10.0)), base=[],
                            times=["a", "b", "c"], n_history=2, values=values, density=values / 10,
                            view=view_of(units), key="district", label="people")
    assert len(payload["colors"]) == 3 and len(payload["colors"][0]) == len(units)
    assert payload["values"][2][1] == values[1, 2]
    x0, y0, x1, y1 = units.total_bounds
    assert x0 < payload["view"]["longitude"] < x1 and y0 < payload["view"]["latitude"] < y1


def test_kpis_and_cards():
    values = np.array([[10.0, 20.0], [5.0, np.nan]])
    density = np.array([[0.1, 0.9], [0.5, np.nan]])
    items = {k["label"]: k["value"] for k in kpis(values, density, ["a/x", "a/y"], n_open_alerts=3, step=1,
                                                  variable="people")}
    assert items["people"] == "20" and items["fullest unit"] == "x 90%" and items["open alerts"] == "3"
    assert items["over 80 % of capacity"] == "1 / 2"
    trips = {k["label"] for k in kpis(values, density, ["a/x", "a/y"], n_open_alerts=0, step=1,
                                      variable="bike_arrivals", reference="28-day peak")}
    assert {"bike_arrivals", "over 80 % of 28-day peak"} <= trips
    card = {"code": "c/b1/f02", "level": "floor", "floor": 2, "floors": 5, "use": "office", "ownership": "private",
            "tax_status": None, "temperature": 11.25, "rain": 0.0, "variable": "people", "value": 12.0,
            "capacity": 40.0, "time": pd.Timestamp("2026-05-01T10:00Z")}
    rows = dict(card_rows(card))
    assert rows["tax status"] == "restricted" and rows["floor count"] == "5"
    assert rows["weather"] == "11.2 °C, rain 0.0 mm" and rows["date"] == "Fri 2026-05-01 10:00 UTC"
    # people see the city's local time, daylight saving included
    assert dict(card_rows({**card, "tz": "Europe/Amsterdam"}))["date"] == "Fri 2026-05-01 12:00 CEST"
    assert dict(card_rows({**card, "time": pd.Timestamp("2026-01-05T10:00Z"), "tz": "Europe/Amsterdam"}))["date"] \
        == "Mon 2026-01-05 11:00 CET"
    assert rows["flow"] == "12 people of 40"
    assert dict(card_rows({**card, "variable": "bike_arrivals", "capacity": None}))["flow"] == "12 bike_arrivals"
    fig = series_figure(pd.DataFrame({"time": [1, 2], "value": [3, 4]}),
                        pd.DataFrame({"time": [3], "value": [5], "risk": [0.1]}), title="t", variable="people",
                        capacity=10)
    assert [t.name for t in fig.data] == ["observed", "forecast"] and fig.layout.yaxis.title.text == "people"


def test_scenario_numbers_find_the_event_hour():
    base = pd.DataFrame({"code": ["a", "b"] * 2, "level": "floor", "horizon": [1, 1, 2, 2],
                         "time": pd.to_datetime(["2026-01-01T01Z"] * 2 + ["2026-01-01T02Z"] * 2),
                         "value": [1.0, 2.0, 3.0, 4.0], "risk": [0.1, 0.2, 0.3, 0.4]})
    alt = base.assign(value=[1.0, 2.0, 3.0, 54.0], risk=[0.1, 0.2, 0.3, 1.0])
    nums = scenario_numbers(base, alt, level="floor")
    assert nums["horizon"] == 2 and nums["diff"]["b"] == 50 and nums["units_changed"] == 1
    assert nums["scenario_total"] - nums["baseline_total"] == 50
    ov = scenario_overrides(kind="event", code="a", people=50, hours=2, time=pd.Timestamp("2026-01-01T02Z"),
                            temperature=None, rain=3.0, holiday=True)
    assert ov["event"]["people"] == 50.0 and ov["weather"] == {"temperature": None, "rain": 3.0} and ov["holiday"]


def test_forecast_band_drawn_only_where_percentiles_are_stored():
    history = pd.DataFrame({"time": pd.to_datetime(["2026-01-01T00Z", "2026-01-01T01Z"]), "value": [3.0, 4.0]})
    times = pd.to_datetime(["2026-01-01T02Z", "2026-01-01T03Z", "2026-01-01T04Z"])
    forecast = pd.DataFrame({"time": times, "value": [5.0, 6.0, 7.0], "risk": 0.1, "q10": [4.0, 4.5, np.nan],
                             "q50": [5.0, 6.0, 7.0], "q90": [6.0, 8.0, 9.0]})
    fig = series_figure(history, forecast, title="t", variable="people")
    assert [t.name for t in fig.data] == ["observed", "p90", "p10–p90", "forecast"]
    upper, lower = fig.data[1], fig.data[2]
    assert lower.fill == "tonexty" and not upper.fill and upper.showlegend is False
    # the band spans only the steps with both percentiles, the point forecast every step
    assert list(upper.y) == [6.0, 8.0] and list(lower.y) == [4.0, 4.5] and len(fig.data[3].y) == 3
    # the baseline's forecasts have no percentiles (stored as null): no band
    plain = forecast.assign(q10=None, q50=None, q90=None)
    assert forecast_band(plain).empty
    assert [t.name for t in series_figure(history, plain, title="t", variable="people").data] == [
        "observed", "forecast"]
    no_columns = forecast[["time", "value", "risk"]]
    assert [t.name for t in series_figure(history, no_columns, title="t", variable="people").data] == [
        "observed", "forecast"]


def _run(metrics: dict, *, run_id: int = 7, name: str = "tower") -> pd.Series:
    return pd.Series({"id": run_id, "name": name, "kind": "champion", "status": "trained", "metrics": metrics})


def test_skill_text_names_the_model_and_its_test_scores():
    metrics = {"champion": "tower", "levels": ["district", "city"], "step": "0 days 01:00:00", "horizons": 3,
               "test": {"tower": {"district": {"rmse_all": 12.345}, "city": {"rmse_all": 1234.5}},
                        "seasonal_naive": {"district": {"rmse_all": 20.0}, "city": {"rmse_all": 1000.0}}},
               "skill": {"test": {"tower": {"district": 38.3, "city": -23.45}}},
               "probabilistic": {"test": {"district": {"coverage_p10_p90": 0.7812},
                                          "city": {"coverage_p10_p90": None}}}}
    district = dict(skill_rows(run_skill(_run(metrics), level="district", variable="people")))
    assert district == {"forecast by": "tower (model run 7)", "test RMSE": "12.3 people (next 3 h)",
                        "vs seasonal naive": "38 % lower RMSE",
                        "p10–p90 coverage": "78 % (ideal 80 %)"}
    city = dict(skill_rows(run_skill(_run(metrics), level="city", variable="people")))
    assert city["test RMSE"] == "1,234 people (next 3 h)" and city["vs seasonal naive"] == "23 % higher RMSE"
    assert city["p10–p90 coverage"] == "–"
    even = {**metrics, "skill": {"test": {"tower": {"district": 0.4}}}}
    assert dict(skill_rows(run_skill(_run(even), level="district", variable="people")))["vs seasonal naive"] == (
        "the same RMSE")
    # a level the run did not score, a run of 15-minute steps, a run recorded without test scores
    assert dict(skill_rows(run_skill(_run(metrics), level="floor", variable="people")))["test scores"] == (
        "none recorded at floor level")
    quarter = {**metrics, "step": "0 days 00:15:00", "horizons": 2}
    assert dict(skill_rows(run_skill(_run(quarter), level="district", variable="trips")))["test RMSE"] == (
        "12.3 trips (next 30 min)")
    old = dict(skill_rows(run_skill(_run({"validation": {}}, name="tower"), level="city", variable="people")))
    assert old == {"forecast by": "tower (model run 7)", "test scores": "none recorded at city level"}


def test_skill_text_says_plainly_when_the_baseline_forecasts():
    skill = run_skill(None, level="district", variable="trips")
    assert skill_rows(skill) == [("forecast by", "historical average (baseline)"),
                                 ("test scores", "none: no model of trips has been trained")]
    assert skill_rows({**skill, "waiting": 4})[1] == ("test scores",
                                                     "none: model run 4 is trained but has not forecast yet")


def test_the_time_slider_speaks_local_time_across_the_clock_change():
    from ciu.viz.pages.common import slider_marks, time_label

    # Europe/Amsterdam springs forward at 01:00 UTC on 2026-03-29: 02:00 CET is followed by 03:00 CEST
    times = [f"2026-03-29T{h:02d}:00:00+00:00" for h in range(0, 5)]
    tz = "Europe/Amsterdam"
    assert time_label(times, 2, None, tz) == "Sun 2026-03-29 03:00 CEST · observed"
    assert time_label(times, 2, 0, tz) == "Sun 2026-03-29 01:00 CET · observed (1 h ago)"
    assert time_label(times, 2, 4, tz) == "Sun 2026-03-29 06:00 CEST · forecast +3 h"
    assert time_label(times, 2, 4) == "Sun 2026-03-29 04:00 UTC · forecast +3 h"
    marks = slider_marks(times, 2, tz)
    assert marks[4] == "06h" and marks[1]["label"] == "now" and 0 not in marks  # 01:00 local is no sixth hour
    from ciu.viz.pages.operations import _span

    assert _span("2026-05-24T16:00Z", "2026-05-24T18:00Z", tz) == "Sun 18:00–20:00 CEST"  # an alert episode
    assert _span("2026-05-24T16:00Z", "2026-05-24T16:00Z", tz) == "Sun 18:00 CEST"
