"""Training on a twin, the champion's forecasts, quantiles and alerts in PostGIS, read back through ``ciu``."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ciu.alerts import AlertRule
from ciu.errors import NotFound, ValidationError
from ciu.models.forecaster import FORECAST_COLUMNS, ChampionForecaster
from ciu.models.runs import last_observed, predict_to_store, skill_table, train_on_twin
from ciu.models.settings import ModelSettings
from ciu.models.train import TrainConfig

CONFIG = TrainConfig(history=6, horizons=3, hidden=16, epochs=2, max_val_samples=16, seed=1, threads=1,
                     progress=False)
MODELS = ("persistence", "seasonal_naive", "historical_average", "ridge_unit", "tower")
ISSUED = datetime(2026, 4, 11, 9, tzinfo=timezone.utc)


@pytest.fixture
def trained(city, tmp_path):
    settings = ModelSettings(dir=tmp_path)
    report = train_on_twin(city, CONFIG, models=MODELS, settings=settings)
    return report, settings


def _coherent(city, frame: pd.DataFrame, column: str = "value") -> None:
    units = pd.concat([city.units(level=lv)[["parent_code"]] for lv in city.levels])
    child = frame.join(units, on="code").dropna(subset=["parent_code"])
    sums = child.groupby(["parent_code", "horizon"])[column].sum()
    parents = frame.set_index(["code", "horizon"])[column].reindex(sums.index)
    np.testing.assert_allclose(sums.to_numpy(), parents.to_numpy(), rtol=1e-6, atol=1e-6)


def test_run_records_the_whole_comparison(city, trained):
    report, _ = trained
    runs = city.store.model_runs()
    row = runs[runs["id"] == report.run_id].iloc[0]
    assert row["status"] == "trained" and row["kind"] == "champion"
    assert row["data_hash"] == city.store.data_hash()
    metrics = row["metrics"]
    assert row["name"] == metrics["champion"]
    assert metrics["champion"] in metrics["validation"]
    assert set(MODELS) <= set(metrics["validation"]) and set(MODELS) <= set(metrics["test"])
    for model in MODELS:
        assert set(metrics["validation"][model]) == set(city.levels)
    assert metrics["step"] == "0 days 01:00:00" and metrics["horizons"] == 3
    assert metrics["training"]["tower"]["epochs"] >= 1 and metrics["training"]["tower"]["cpu_seconds"] > 0
    assert metrics["missing"]["issue_steps"]["val"] > 0
    for level, p in metrics["probabilistic"]["test"].items():
        assert p["quantiles_ordered"], level
    table = skill_table(metrics, split="validation")
    assert set(table["model"]) >= set(MODELS)
    assert table["champion"].any()
    sn = table[table["model"] == "seasonal_naive"]
    assert np.allclose(sn["gain_over_seasonal_naive_pct"].dropna(), 0.0)
    assert report.checkpoint.is_file()


def test_forecast_every_unit_every_level_under_the_contract(city, trained):
    report, _ = trained
    fc = ChampionForecaster.load(city)
    assert fc.run_id == report.run_id
    frame = fc.forecast(city, issued_at=ISSUED, horizons=2)
    assert list(frame.columns) == FORECAST_COLUMNS
    assert len(frame) == 2 * sum(city.store.count_units().values())
    # horizon h is the step issued_at + h
    assert (frame["time"] == ISSUED + pd.to_timedelta(frame["horizon"], unit="h")).all()
    _coherent(city, frame)
    assert (frame["q10"] <= frame["q50"] + 1e-9).all() and (frame["q50"] <= frame["q90"] + 1e-9).all()
    assert frame["risk"].between(0, 1).all()
    # observations after issued_at are not used
    later = city.observations("people", start=ISSUED + pd.Timedelta(hours=1),
                              end=ISSUED + pd.Timedelta(hours=5))
    assert len(later) > 0
    city.store.conn.execute("DELETE FROM ciu.observation o USING ciu.variable v WHERE v.id = o.variable_id"
                            " AND v.name = 'people' AND o.time > %s", (ISSUED,))
    again = fc.forecast(city, issued_at=ISSUED, horizons=2)
    pd.testing.assert_frame_equal(frame, again)


def test_overrides_change_the_inputs(city, trained):
    fc = ChampionForecaster.load(city)
    base = fc.forecast(city, issued_at=ISSUED, horizons=3).set_index(["code", "horizon"])
    building = city.units(level="building").index[0]
    closed = fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={"closure": {"code": building}})
    _coherent(city, closed)
    closed = closed.set_index(["code", "horizon"])
    below = [c for c in closed.index.get_level_values(0).unique() if c.startswith(building)]
    assert (closed.loc[below, "value"] == 0).all()
    city_code = city.units(level="city").index[0]
    assert closed.loc[(city_code, 1), "value"] <= base.loc[(city_code, 1), "value"] + 1e-6
    with pytest.raises(ValidationError):
        fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={"meteor": {}})
    with pytest.raises(ValidationError):
        fc.forecast(city, issued_at=ISSUED, horizons=9)
    # a twin whose units changed since training is refused at once, before any graph is built, naming the change
    import geopandas as gpd

    floor = city.units(level="floor").iloc[[0]]
    parent = floor["parent_code"].iloc[0]
    top = float(city.units(level="floor").query("parent_code == @parent")["z_max"].max())
    city.load_units(gpd.GeoDataFrame([dict(code=f"{parent}/f98", parent_code=parent, level="floor",
                                           geometry=floor.geometry.iloc[0], z_min=top, z_max=top + 3.0)],
                                     geometry="geometry", crs=4326))
    n = len(city.units(level="floor"))
    with pytest.raises(ValidationError, match=f"floor {n - 1:,} then, {n:,} now"):
        fc.forecast(city, issued_at=ISSUED, horizons=3)


def test_scenario_invariants_hold_for_the_tower_and_the_historical_average(city, trained):
    from ciu.forecast import HistoricalAverageForecaster

    building = str(city.units(level="building").index[0])
    above = []
    code = building
    while (parent := city.unit(code).parent_code) is not None:
        above.append(parent)
        code = parent
    event = {"code": building, "time": (ISSUED + pd.Timedelta("2h")).isoformat(), "people": 500.0, "hours": 1}
    stored_run, _, _ = predict_to_store(city, issued_at=ISSUED)
    stored = city.store.predictions(run_id=stored_run).set_index(["code", "horizon"])
    for fc in (ChampionForecaster.load(city), HistoricalAverageForecaster()):
        name = type(fc).__name__
        base = fc.forecast(city, issued_at=ISSUED, horizons=3).set_index(["code", "horizon"])
        # no change: the scenario is the forecast (and the stored one of the same issue time, for the champion)
        same = fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={}).set_index(["code", "horizon"])
        np.testing.assert_allclose(same["value"], base["value"], rtol=1e-9, err_msg=name)
        if isinstance(fc, ChampionForecaster):
            np.testing.assert_allclose(stored.loc[base.index, "value"], base["value"], rtol=1e-6, err_msg=name)
        moved = fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={"event": event})
        _coherent(city, moved)
        diff = moved.set_index(["code", "horizon"])["value"] - base["value"]
        # nothing before the event starts, nothing after it ends
        assert np.abs(diff.xs(1, level="horizon")).max() < 1e-6, name
        assert np.abs(diff.xs(3, level="horizon")).max() < 1e-6, name
        # N more people at the unit and at every unit above it, and nowhere else at its level
        at = diff.xs(2, level="horizon")
        for unit in [building, *above]:
            assert at[unit] == pytest.approx(500.0, rel=1e-6), (name, unit)
        others = [c for c in city.units(level="building").index if c != building]
        assert np.abs(at[others]).max() < 1e-6, name
        closed = fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={"closure": {"code": building}})
        below = closed[closed["code"].str.startswith(building)]
        assert len(below) > 3 and (below["value"] == 0).all(), name


def test_predictions_quantiles_and_alerts_land_in_postgis(city, trained):
    report, _ = trained
    frame = ChampionForecaster.load(city).forecast(city, issued_at=ISSUED, horizons=3)
    threshold = float(np.quantile(frame["risk"], 0.9))
    rule = AlertRule(threshold=max(threshold, 1e-6), critical=1.0)
    run_id, n, k = predict_to_store(city, issued_at=ISSUED, rule=rule)
    assert run_id == report.run_id and n == len(frame)
    stored = city.store.predictions(run_id=run_id)
    assert len(stored) == len(frame) and set(stored["level"]) == set(city.levels)
    assert (stored["issued_at"] == ISSUED).all()
    merged = stored.merge(frame, on=["code", "horizon"], suffixes=("", "_fc"))
    for column in ("value", "q10", "q50", "q90", "risk"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_fc"], rtol=1e-6, atol=1e-9)
    hot = frame[frame["risk"] >= rule.threshold]
    alerts = city.store.alerts()
    # one episode per unit and run of consecutive alerted hours, spanning them
    spans = {code: (g["time"].min(), g["time"].max()) for code, g in hot.groupby("code")
             if (g["time"].drop_duplicates().sort_values().diff().dropna() == pd.Timedelta("1h")).all()}
    assert k == len(alerts) >= len(hot["code"].unique()) and (alerts["state"] == "open").all()
    for r in alerts[alerts["code"].isin(spans)].itertuples():
        assert (r.time, r.until) == spans[r.code]
    # the same forecast again opens no episode (it extends the same ones) and replaces the forecasts
    assert predict_to_store(city, issued_at=ISSUED, rule=rule)[2] == k
    assert len(city.store.alerts()) == k and len(city.store.predictions(run_id=run_id)) == len(frame)
    still = set(frame.loc[frame["risk"] >= 1.0, "code"])  # alerted even at a level of 1
    first = int(alerts.loc[~alerts["code"].isin(still), "id"].iloc[0])
    city.acknowledge_alert(first, by="operator test")
    assert city.alerts(ids=[first]).iloc[0]["state"] == "acknowledged"
    # a newer forecast that no longer raises them resolves every live episode of the units it covers
    calm = AlertRule(threshold=1.0, critical=1.0)
    predict_to_store(city, issued_at=ISSUED, rule=calm)
    after = city.store.alerts().set_index("id")
    assert (after.loc[~after["code"].isin(still), "state"] == "resolved").all()
    assert (after.loc[~after["code"].isin(still), "resolved_by"] == "forecast").all()
    assert list(city.alert_history(first)["event"]) == ["opened", "extended", "acknowledged", "resolved"]


def test_default_issue_time_is_the_last_observation(city, trained):
    run_id, _, _ = predict_to_store(city)
    stored = city.store.predictions(run_id=run_id)
    assert (stored["issued_at"] == last_observed(city, "people")).all()
    assert (stored["time"] == stored["issued_at"] + pd.to_timedelta(stored["horizon"], unit="h")).all()


def test_load_without_run_says_so(city):
    with pytest.raises(NotFound):
        ChampionForecaster.load(city)


def test_cli_train_evaluate_predict(city_url, tmp_path, monkeypatch):
    from ciu.cli import app

    monkeypatch.setenv("CIU_DATABASE_URL", city_url)
    monkeypatch.setenv("CIU_MODEL_DIR", str(tmp_path))
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--history", "6", "--hidden", "8", "--epochs", "1", "--threads", "1",
                              "--models", "persistence,seasonal_naive,historical_average,ridge_unit,tower"])
    assert res.exit_code == 0, res.output
    assert "model run" in res.output and "champion" in res.output and "floor" in res.output
    assert "seasonal naive" in res.output
    res = runner.invoke(app, ["evaluate", "--split", "validation"])
    assert res.exit_code == 0, res.output
    for word in ("validation", "city", "RMSE", "MAE", "MAPE", "seasonal_naive", "tower", "coverage", "Brier"):
        assert word in res.output, word
    res = runner.invoke(app, ["evaluate", "--split", "sideways"])
    assert isinstance(res.exception, ValidationError) and "split" in str(res.exception)
    res = runner.invoke(app, ["predict", "--issued-at", "2026-04-11T09:00:00"])
    assert res.exit_code == 0, res.output
    assert "forecasts issued at 2026-04-11 09:00 UTC" in res.output
