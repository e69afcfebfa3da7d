"""A target other than ``people``, end to end on a real PostGIS: train → predict → API → dashboard.

The tiny city gets ``trips``, a count observed per grid cell only and with no
capacity (like Citi Bike trips per Manhattan taxi zone): the model works on the
grid and the levels above it, and the forecasts reach the API and the dashboard
under their own name, beside the sample city's ``people``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import mapbox_vector_tile
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ciu.alerts import AlertRule
from ciu.api.app import create_app
from ciu.api.settings import ApiSettings
from ciu.domain import Variable
from ciu.errors import ValidationError
from ciu.forecast import HistoricalAverageForecaster, forecast_variable, load_forecaster
from ciu.models.graph import build_graph, target_levels
from ciu.models.runs import last_observed, predict_to_store, train_on_twin, training_window
from ciu.models.settings import ModelSettings
from ciu.models.train import TrainConfig
from ciu.store import ApiStore
from ciu.twin import Twin
from ciu.viz.data import DashboardData, publish_forecast
from ciu.viz.settings import DashboardSettings

TRIPS = Variable("trips", "trips", "social", "sum", "sum", description="trips ending in the cell")
CONFIG = TrainConfig(history=6, horizons=3, hidden=8, lstm_hidden=4, epochs=2, max_val_samples=16, seed=1, threads=1,
                     progress=False)
MODELS = ("persistence", "seasonal_naive", "historical_average", "ridge_unit", "tower")
UPPER = ["grid", "district", "city"]


def add_trips(twin: Twin) -> None:
    """``trips`` per grid cell and hour: a tenth of the people there, rounded (zero in cells without buildings)."""
    people = twin.rollup("people", level="grid")
    wide = people.pivot(index="time", columns="code", values="value")
    wide = wide.reindex(columns=twin.units(level="grid").index, fill_value=0.0).fillna(0.0)
    trips = np.round(wide / 10).stack().rename("value").reset_index()
    twin.store.register_variables([TRIPS])
    twin.load_observations(trips.assign(variable="trips")[["code", "variable", "time", "value"]])


@pytest.fixture
def trips_city(city_url: str) -> Iterator[Twin]:
    twin = Twin.connect(city_url, migrate=False)
    add_trips(twin)
    yield twin
    twin.close()


def test_model_levels_start_where_the_target_is_observed(trips_city: Twin) -> None:
    assert target_levels(trips_city, "trips") == UPPER
    assert target_levels(trips_city, "people") == list(trips_city.levels)
    graph = build_graph(trips_city, target="trips")
    assert graph.level_names == UPPER and graph.values.shape[1] == len(trips_city.units(level="grid"))
    with pytest.raises(ValidationError, match="observed from level 'grid'"):
        build_graph(trips_city, target="trips", levels=["building", *UPPER])
    with pytest.raises(ValidationError, match="consecutive"):
        build_graph(trips_city, target="trips", levels=["grid", "city"])
    last = last_observed(trips_city, "trips")
    assert last == trips_city.rollup("trips", level="city")["time"].max()
    end = last + pd.Timedelta(hours=1)
    assert training_window(trips_city, "trips", 2) == (end - pd.Timedelta(days=2), end)


def test_historical_average_forecasts_any_count(trips_city: Twin) -> None:
    issued = last_observed(trips_city, "trips")
    frame = HistoricalAverageForecaster(variable="trips").forecast(trips_city, issued_at=issued, horizons=4)
    assert set(frame["level"]) == set(UPPER) and set(frame["variable"]) == {"trips"}
    wide = frame.pivot_table(index="code", columns="horizon", values="value")
    grid = trips_city.units(level="grid")
    summed = wide.loc[grid.index].groupby(grid["parent_code"].to_numpy()).sum()
    np.testing.assert_allclose(summed.to_numpy(), wide.loc[summed.index].to_numpy(), rtol=1e-9)
    # no capacity: risk is the forecast over the unit's usual peak
    assert frame["risk"].between(0, 1).all() and frame["risk"].max() > 0.2


def test_trips_train_predict_api_dashboard(trips_city: Twin, city_url: str, tmp_path) -> None:
    twin = trips_city
    settings = ModelSettings(dir=tmp_path)
    report = train_on_twin(twin, CONFIG, target="trips", models=MODELS, settings=settings, window_days=14)
    run = twin.store.model_runs().set_index("id").loc[report.run_id]
    assert run["params"]["target"] == "trips" and run["params"]["levels"] == UPPER
    assert set(run["metrics"]["validation"]["tower"]) == set(UPPER)
    champion = run["name"]
    assert champion == run["metrics"]["champion"]
    assert forecast_variable(twin) == "trips"
    assert load_forecaster(twin, "trips")[1] == champion
    assert load_forecaster(twin, "people")[1] == "historical_average"  # no model of people

    # predict: issued at the last observation of trips (horizon h is h hours later), every unit of the model's levels
    run_id, n, _ = predict_to_store(twin, target="trips", rule=AlertRule(threshold=0.5))
    counts = twin.store.count_units()
    assert run_id == report.run_id and n == CONFIG.horizons * sum(counts[lv] for lv in UPPER)
    stored = twin.store.predictions(variable="trips")
    assert set(stored["variable"]) == {"trips"} and set(stored["level"]) == set(UPPER)
    issued = last_observed(twin, "trips")
    assert (stored["issued_at"] == issued).all()

    # a newer forecast of people does not hide the trips forecast
    publish_forecast(twin, variable="people", horizons=2)
    assert int(twin.store.predictions(variable="trips")["run_id"].iloc[0]) == run_id
    assert set(twin.store.predictions(variable="people")["variable"]) == {"people"}

    # the API serves the stored forecasts and runs scenarios with the trips model
    _, token = ApiStore(twin.store.conn).create_key(name="analyst", role="admin")
    api = ApiSettings(rate_limit_per_minute=0, audit_flush_s=0.2)
    with TestClient(create_app(api, database_url=city_url)) as client:
        r = client.get("/predictions", params={"variable": "trips", "level": "district", "horizon": 1},
                       headers={"X-API-Key": token})
        assert r.status_code == 200, r.text
        body = r.json()["predictions"]
        assert len(body) == counts["district"] and {p["run_id"] for p in body} == {run_id}
        want = stored[(stored["level"] == "district") & (stored["horizon"] == 1)].set_index("code")["value"]
        assert {p["code"]: p["value"] for p in body} == pytest.approx(want.to_dict())
        cell = str(twin.units(level="grid").index[0])
        r = client.post("/scenarios", json={"variable": "trips", "horizons": 2, "closure": {"code": cell}},
                        headers={"X-API-Key": token})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["model"] == champion
        assert pd.Timestamp(answer["issued_at"]) == issued  # the latest observed hour, as stored forecasts
        closed = [u for u in answer["units"] if u["code"] == cell]
        assert closed and all(u["scenario"] == 0 and u["variable"] == "trips" for u in closed)
        r = client.post("/scenarios", json={"variable": "nope", "holiday": True}, headers={"X-API-Key": token})
        assert r.status_code == 404
        # with no variable named, series and tiles show the one the twin forecasts
        r = client.get(f"/units/{cell}/series", headers={"X-API-Key": token})
        assert r.status_code == 200 and r.json()["variable"] == "trips"
        lon, lat = twin.units(level="grid").geometry.iloc[0].representative_point().coords[0]
        z = 14
        x = int((lon + 180.0) / 360.0 * 2**z)
        y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * 2**z)
        r = client.get(f"/tiles/grid/{z}/{x}/{y}.mvt", headers={"X-API-Key": token})
        assert r.status_code == 200, r.text
        props = [f["properties"] for f in mapbox_vector_tile.decode(r.content)["grid"]["features"]]
        trips_now = stored[(stored["level"] == "grid") & (stored["horizon"] == 1)].set_index("code")["value"]
        shown = {p["code"]: p["forecast"] for p in props if "forecast" in p}
        assert shown and all(v == pytest.approx(trips_now[c]) for c, v in shown.items())

    # the dashboard shows trips on the levels where they are known, against each unit's recent peak
    data = DashboardData(twin, DashboardSettings(variable="trips", history_hours=6))
    assert data.levels == UPPER[::-1] and data.bottom_level == "grid"
    assert not data.has_capacity and data.reference_name == "28-day peak"
    frame = data.level_frame("grid")
    assert frame.n_history == 6 and len(frame.times) == 6 + CONFIG.horizons
    assert np.isfinite(frame.values).all() and (frame.reference > 0).sum() > len(frame.reference) // 3
    # the reference is each cell's peak hour of the last 28 days: no observed hour goes beyond it
    assert (frame.reference >= frame.values[:, :frame.n_history].max(axis=1)).all()
    seen = frame.density[:, :frame.n_history]
    assert np.nanmax(seen) <= 1.0 and np.isnan(seen[frame.reference == 0]).all()
    card = data.card(cell)
    assert card["variable"] == "trips" and card["capacity"] is None and card["value"] is not None
    out = data.scenario({"closure": {"code": cell}}, horizons=2)
    assert out["model"] == champion and set(out["baseline"]["variable"]) == {"trips"}
    with pytest.raises(ValidationError):
        data.units("floor")
