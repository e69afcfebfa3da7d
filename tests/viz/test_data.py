"""The dashboard's reads and writes through the twin, on a real PostGIS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ciu.errors import ConfigError, Forbidden
from ciu.store import ApiStore
from ciu.viz.data import DashboardData, latest_hour, publish_forecast
from ciu.viz.provider import DataProvider
from ciu.viz.settings import DashboardSettings
from tests.viz.conftest import quick_training


def test_published_forecast_follows_history(city, published):
    data = DashboardData(city, DashboardSettings(history_hours=6))
    frame = data.level_frame("district")
    assert frame.n_history == 6 and len(frame.times) == 6 + 6
    assert frame.times[frame.n_history - 1] == latest_hour(city, "people")
    assert np.isfinite(frame.values).all()
    # the districts' capacities are their floors' capacities summed
    floors = city.units(level="floor")
    total = sum(a["capacity"] for a in floors["attrs"])
    assert frame.reference.sum() == pytest.approx(total)
    assert published["alerts"] > 0


def test_the_dashboards_data_is_a_data_provider(city, published):
    data = DashboardData(city, DashboardSettings())
    assert isinstance(data, DataProvider)  # every member the pages use, present
    assert data.levels[0] == city.levels[-1] and data.bottom_level == city.levels[0]


def test_drill_down_keeps_the_subtree(city, published):
    data = DashboardData(city, DashboardSettings(history_hours=2))
    district = data.units("district").index[0]
    buildings = data.level_frame("building", within=district)
    assert len(buildings.units) > 0 and all(c.startswith(district + "/") for c in buildings.units.index)


def test_card_shows_restricted_fields_only_to_the_role(city, published):
    floor = city.units(level="floor").index[0]
    plain = DashboardData(city, DashboardSettings()).card(floor)
    assert plain["tax_status"] is None and plain["role"] == "operator"
    assert plain["floors"] >= 1 and plain["ownership"] and plain["value"] is not None
    assert plain["variable"] == "people" and plain["capacity"] > 0
    _, token = ApiStore(city.store.conn).create_key(name="finance desk", role="finance")
    finance = DashboardData(city, DashboardSettings(api_key=token)).card(floor)
    building = city.unit(floor).parent_code
    assert finance["tax_status"] == city.unit(building, include_restricted=True).restricted["tax_status"]
    assert finance["restricted_visible"] == ["assessed_value_eur", "tax_status"]
    with pytest.raises(ConfigError):
        DashboardData(city, DashboardSettings(api_key="ciu_not-a-key")).role()


def test_acknowledge_persists_and_needs_the_role(city, published):
    data = DashboardData(city, DashboardSettings())
    first = int(data.alerts().iloc[0]["id"])
    data.acknowledge(first)
    stored = city.store.alerts().set_index("id").loc[first]
    assert stored["acknowledged_by"] == "dashboard" and stored["acknowledged_at"] is not None
    assert first not in set(data.alerts()["id"])
    _, token = ApiStore(city.store.conn).create_key(name="kiosk", role="public")
    with pytest.raises(Forbidden):
        DashboardData(city, DashboardSettings(api_key=token)).acknowledge(int(data.alerts().iloc[0]["id"]))


def test_scenario_event_adds_its_people(city):
    data = DashboardData(city, DashboardSettings(horizons=4))
    building = city.units(level="building").index[0]
    start = data.now() + pd.Timedelta(hours=2)
    out = data.scenario({"event": {"code": building, "time": start, "people": 300, "hours": 1}})
    b, s = (f[f["level"] == "city"].set_index("horizon")["value"] for f in (out["baseline"], out["scenario"]))
    assert (s - b).round(6).tolist() == [0.0, 300.0, 0.0, 0.0]
    assert out["model"] == "historical_average"


def test_skill_and_band_of_a_trained_champion(city, champion):
    data = DashboardData(city, DashboardSettings(history_hours=6))
    metrics = champion["metrics"]
    best = metrics["champion"]
    for level in data.levels:
        skill = data.skill(level)
        assert skill["trained"] and skill["scored"]
        assert skill["model"] == best and skill["run_id"] == champion["run_id"]
        assert skill["horizons"] == 3 and skill["step"] == "0 days 01:00:00"
        reference = metrics["test"]["seasonal_naive"][level]["rmse_all"]
        assert skill["rmse"] == pytest.approx(metrics["test"][best][level]["rmse_all"]) and skill["rmse"] > 0
        assert skill["gain_pct"] == pytest.approx(100 * (1 - skill["rmse"] / reference))
        assert 0 < skill["coverage"] <= 1
    # the unit's forecast: the three hours after now, each with ordered percentiles
    district = data.units("district").index[0]
    _, forecast = data.unit_series(district)
    now = data.now()
    assert list(forecast["time"]) == [now + pd.Timedelta(hours=h) for h in (1, 2, 3)]
    q = forecast[["q10", "q50", "q90"]].to_numpy()
    assert np.isfinite(q).all() and (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()


def test_published_champion_forecast_keeps_to_its_horizons(city, champion):
    done = publish_forecast(city, variable="people", horizons=12, threshold=0.3)
    assert done["model"] == champion["metrics"]["champion"] and done["run_id"] != champion["run_id"]
    assert done["predictions"] == 3 * len(city.units())
    run = city.store.model_runs().set_index("id").loc[done["run_id"]]
    assert run["params"]["horizons"] == 3 and run["params"]["model_run"] == champion["run_id"]
    data = DashboardData(city, DashboardSettings())
    # the forecasts shown are the published ones; their skill is that of the run they came from
    assert set(city.store.predictions(variable="people")["run_id"]) == {done["run_id"]}
    assert data.skill("city")["run_id"] == champion["run_id"] and data.horizons == 3
    out = data.scenario({"holiday": True})
    assert sorted(out["baseline"]["horizon"].unique()) == [1, 2, 3]


def test_skill_follows_the_forecasts_shown(city, published, tmp_path):
    data = DashboardData(city, DashboardSettings())
    skill = data.skill("district")
    assert not skill["trained"] and skill["model"] == published["model"] == "historical_average"
    assert skill["rmse"] is None and skill["run_id"] is None and skill["waiting"] is None
    _, forecast = data.unit_series(data.units("district").index[0])
    assert len(forecast) == 6 and forecast[["q10", "q50", "q90"]].isna().all().all()
    # a model trained since is not what made the forecasts on the page
    waiting = quick_training(city, tmp_path, predict=False)
    skill = data.skill("district")
    assert not skill["trained"] and skill["waiting"] == waiting
    run_id = quick_training(city, tmp_path, predict=True)
    assert data.skill("district")["run_id"] == run_id
