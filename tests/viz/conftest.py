"""Fixtures of the dashboard tests: the tiny city with a published forecast and alerts, a served app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench.common import in_background
from ciu.twin import Twin
from viz.data import publish_forecast

#: low enough that the tiny city raises alerts in its forecast hours
THRESHOLD = 0.3


@pytest.fixture
def published(city: Twin) -> dict:
    """Forecast the tiny city for 6 hours and raise its alerts; returns what was published."""
    return publish_forecast(city, variable="people", horizons=6, threshold=THRESHOLD)


@contextmanager
def serving(app) -> Iterator[str]:
    """Serve a Dash app on 127.0.0.1 at a free port in a background thread; yields its URL."""
    from werkzeug.serving import make_server

    with in_background(make_server("127.0.0.1", 0, app.server, threaded=True)) as url:
        yield url
