"""Training runs, forecasts and alerts in PostGIS, read back through ``ciu``."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ciu.errors import NotFound, ValidationError
from models.forecaster import TowerForecaster
from models.runs import predict_to_store, train_on_twin
from models.settings import ModelSettings
from models.train import TrainConfig

CONFIG = TrainConfig(history=6, horizons=3, hidden=8, epochs=2, batch_size=16, max_steps_per_epoch=2,
                     max_val_samples=16, seed=1, threads=1)
ISSUED = datetime(2026, 4, 11, 9, tzinfo=timezone.utc)


@pytest.fixture
def trained(city, tmp_path):
    settings = ModelSettings(dir=tmp_path)
    report = train_on_twin(city, CONFIG, settings=settings)
    return report, settings


def test_run_is_recorded(city, trained):
    report, _ = trained
    runs = city.store.model_runs()
    row = runs[runs["id"] == report.run_id].iloc[0]
    assert row["status"] == "trained" and row["kind"] == "tower"
    assert row["data_hash"] == city.store.data_hash()
    assert row["params"]["train"]["hidden"] == 8
    assert set(row["metrics"]["validation"]) == set(city.levels)
    assert row["metrics"]["best_epoch"] in (0, 1)
    assert report.checkpoint.is_file()


def test_forecast_every_unit_every_level(city, trained):
    report, _ = trained
    fc = TowerForecaster.load(city)
    assert fc.run_id == report.run_id
    frame = fc.forecast(city, issued_at=ISSUED, horizons=2)
    assert list(frame.columns) == ["code", "level", "variable", "horizon", "time", "value", "risk"]
    counts = city.store.count_units()
    assert len(frame) == 2 * sum(counts.values())
    # coherent: every parent is the sum of its children
    units = pd.concat([city.units(level=lv)[["parent_code"]] for lv in city.levels])
    child = frame.join(units, on="code").dropna(subset=["parent_code"])
    sums = child.groupby(["parent_code", "horizon"])["value"].sum()
    parents = frame.set_index(["code", "horizon"])["value"].reindex(sums.index)
    np.testing.assert_allclose(sums.to_numpy(), parents.to_numpy(), rtol=1e-4, atol=1e-2)
    assert frame["risk"].between(0, 1).all()
    assert (frame["time"] == ISSUED + pd.to_timedelta(frame["horizon"] - 1, unit="h")).all()


def test_overrides_change_the_inputs(city, trained):
    fc = TowerForecaster.load(city)
    base = fc.forecast(city, issued_at=ISSUED, horizons=3).set_index(["code", "horizon"])
    building = city.units(level="building").index[0]
    closed = fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={"closure": {"code": building}})
    closed = closed.set_index(["code", "horizon"])
    below = [c for c in closed.index.get_level_values(0).unique() if c.startswith(building)]
    assert (closed.loc[below, "value"] == 0).all()
    city_code = city.units(level="city").index[0]
    assert closed.loc[(city_code, 1), "value"] <= base.loc[(city_code, 1), "value"] + 1e-6
    event = fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={
        "event": {"code": building, "time": ISSUED, "people": 5000, "hours": 3}, "holiday": True,
        "weather": {"temperature": 35.0, "rain": 10.0}})
    assert not np.allclose(event["value"].to_numpy(), base["value"].to_numpy())
    with pytest.raises(ValidationError):
        fc.forecast(city, issued_at=ISSUED, horizons=3, overrides={"meteor": {}})
    with pytest.raises(ValidationError):
        fc.forecast(city, issued_at=ISSUED, horizons=9)


def test_predictions_and_alerts_land_in_postgis(city, trained):
    report, settings = trained
    frame = TowerForecaster.load(city).forecast(city, issued_at=ISSUED, horizons=3)
    threshold = float(np.quantile(frame["risk"], 0.9))
    settings = ModelSettings(dir=settings.dir, alert_threshold=threshold, critical_threshold=1.0)
    run_id, n, k = predict_to_store(city, issued_at=ISSUED, settings=settings)
    assert run_id == report.run_id and n == len(frame)
    stored = city.store.predictions(run_id=run_id)
    assert len(stored) == len(frame)
    assert set(stored["level"]) == set(city.levels)
    merged = stored.merge(frame, on=["code", "horizon"], suffixes=("", "_fc"))
    np.testing.assert_allclose(merged["value"], merged["value_fc"], rtol=1e-6)
    alerts = city.store.alerts()
    hot = frame[frame["risk"] >= threshold]
    assert k == len(alerts) == len(hot.drop_duplicates(["code", "time"])) > 0
    assert set(alerts["code"]) == set(hot["code"])
    assert (alerts["severity"] == "warning").all()
    # idempotent: the same forecast again adds no alert and replaces the forecasts
    assert predict_to_store(city, issued_at=ISSUED, settings=settings)[2] == 0
    assert len(city.store.predictions(run_id=run_id)) == len(frame)


def test_load_without_run_says_so(city):
    with pytest.raises(NotFound):
        TowerForecaster.load(city)


def test_cli_train_evaluate_predict(city_url, tmp_path, monkeypatch):
    from ciu.cli import app

    monkeypatch.setenv("CIU_DATABASE_URL", city_url)
    monkeypatch.setenv("CIU_MODEL_DIR", str(tmp_path))
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--history", "6", "--hidden", "8", "--epochs", "1", "--max-steps", "3"])
    assert res.exit_code == 0, res.output
    assert "model run" in res.output and "floor" in res.output
    res = runner.invoke(app, ["evaluate"])
    assert res.exit_code == 0, res.output
    assert "validation" in res.output and "city" in res.output
    res = runner.invoke(app, ["predict", "--issued-at", "2026-04-11T09:00:00"])
    assert res.exit_code == 0, res.output
    assert "forecasts issued" in res.output
