"""The forecast contract, run through every forecaster the twin can answer with.

Issued at ``issued_at`` (floored to the forecaster's step), horizon ``h`` is
``issued_at + h · step`` (:func:`ciu.clock.forecast_times`), for every unit of
every level the forecaster covers, each unit once per horizon; and a trained
model reads no observation after ``issued_at``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ciu.clock import forecast_times
from ciu.forecast import HistoricalAverageForecaster
from ciu.models.forecaster import ChampionForecaster
from ciu.models.runs import last_observed, train_on_twin
from ciu.models.settings import ModelSettings
from ciu.models.train import TrainConfig

CONFIG = TrainConfig(history=6, horizons=3, hidden=8, epochs=1, max_val_samples=16, seed=2, threads=1,
                     progress=False)
MODELS = ("persistence", "seasonal_naive", "ridge_unit", "tower")
PROTOCOL_COLUMNS = {"code", "level", "variable", "horizon", "time", "value", "risk"}


@pytest.fixture
def forecasters(city, tmp_path):
    train_on_twin(city, CONFIG, models=MODELS, settings=ModelSettings(dir=tmp_path))
    champion = ChampionForecaster.load(city, target="people")
    baseline = HistoricalAverageForecaster(variable="people").fit(city)
    return city, {"champion": (champion, champion.step), "historical_average": (baseline, pd.Timedelta(hours=1))}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(back_hours=st.integers(0, 72), minutes=st.integers(0, 59), horizons=st.integers(1, 3))
def test_every_forecaster_keeps_the_contract(forecasters, back_hours: int, minutes: int, horizons: int) -> None:
    city, models = forecasters
    asked = last_observed(city, "people") - pd.Timedelta(hours=back_hours) + pd.Timedelta(minutes=minutes)
    for name, (model, step) in models.items():
        frame = model.forecast(city, issued_at=asked.to_pydatetime(), horizons=horizons)
        assert PROTOCOL_COLUMNS <= set(frame.columns), name
        times = forecast_times(asked.floor(step), horizons, step)
        assert (frame["time"].to_numpy() == times[frame["horizon"].to_numpy() - 1].to_numpy()).all(), name
        per_unit = frame.groupby("code")["horizon"].apply(sorted)
        assert all(h == list(range(1, horizons + 1)) for h in per_unit), name
        for level in frame["level"].unique():
            assert set(frame.loc[frame["level"] == level, "code"]) == set(city.units(level=level).index), name
        assert np.isfinite(frame["value"]).all() and frame["risk"].between(0, 1).all(), name


def test_a_trained_model_reads_nothing_after_its_issue_time(forecasters) -> None:
    city, models = forecasters
    champion, step = models["champion"]
    issued = last_observed(city, "people") - 30 * step
    before = champion.forecast(city, issued_at=issued.to_pydatetime(), horizons=3)
    city.store.conn.execute("DELETE FROM ciu.observation WHERE time > %s AND variable_id = "
                            "(SELECT id FROM ciu.variable WHERE name = 'people')", (issued.to_pydatetime(),))
    after = ChampionForecaster.load(city, target="people").forecast(city, issued_at=issued.to_pydatetime(), horizons=3)
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))
