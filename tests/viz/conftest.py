"""Fixtures of the dashboard tests: the tiny city with a published forecast and alerts, or with a trained
champion's forecast; a served app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.common import in_background
from ciu.twin import Twin
from ciu.viz.data import publish_forecast

#: low enough that the tiny city raises alerts in its forecast hours
THRESHOLD = 0.3
#: the candidates of a quick training run on the tiny city
MODELS = ("persistence", "seasonal_naive", "historical_average", "ridge_unit", "tower")


@pytest.fixture
def published(city: Twin) -> dict:
    """Forecast the tiny city for 6 hours and raise its alerts; returns what was published."""
    return publish_forecast(city, variable="people", horizons=6, threshold=THRESHOLD)


def quick_training(twin: Twin, folder: Path, *, predict: bool) -> int:
    """Train the twin's people forecast for three hours ahead in seconds, and store its forecast when ``predict``.

    Returns the training run's id.
    """
    from ciu.models.runs import predict_to_store, train_on_twin
    from ciu.models.settings import ModelSettings
    from ciu.models.train import TrainConfig

    settings = ModelSettings(dir=folder)
    config = TrainConfig(history=6, horizons=3, hidden=8, epochs=1, max_val_samples=16, threads=1, progress=False)
    report = train_on_twin(twin, config, models=MODELS, settings=settings)
    if predict:
        predict_to_store(twin, run_id=report.run_id)
    return report.run_id


@pytest.fixture
def champion(city: Twin, tmp_path: Path) -> dict:
    """The tiny city with a quickly trained champion and its stored forecast (with percentiles).

    Returns the training run's id and metrics.
    """
    run_id = quick_training(city, tmp_path, predict=True)
    runs = city.store.model_runs().set_index("id")
    return {"run_id": run_id, "metrics": runs.loc[run_id, "metrics"]}


@contextmanager
def serving(app) -> Iterator[str]:
    """Serve a Dash app on 127.0.0.1 at a free port in a background thread; yields its URL."""
    from werkzeug.serving import make_server

    with in_background(make_server("127.0.0.1", 0, app.server, threaded=True)) as url:
        yield url
