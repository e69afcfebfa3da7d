"""The API's scenario service: scenarios run on a small thread pool with their own connections, bounded in time."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Any

import pandas as pd

from ciu.errors import TimeLimitExceeded
from ciu.forecast import HistoricalAverageForecaster, forecast_variable, load_forecaster
from ciu.scenarios import issue_time
from ciu.store import Store
from ciu.twin import Twin

#: the horizons of a scenario that names none, run by a model without a limit of its own (the historical average)
DEFAULT_HORIZONS = 6


class ScenarioRunner:
    """Runs scenarios on a small thread pool with their own connections; remembers fitted models.

    ``workers`` scenarios run side by side (``CIU_API_SCENARIO_WORKERS``); more
    wait for a free worker. Each run gets the database's statement timeout of
    ``timeout_s`` and the caller waits at most as long
    (:class:`ciu.errors.TimeLimitExceeded`); a run whose caller gave up is
    cancelled: dropped if it has not started, else stopped before its next
    forecast, so it does not hold a worker for nothing.
    """

    def __init__(self, pool: Any, *, workers: int = 1, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ciu-scenario")
        self._models: dict[tuple[str, str], tuple[Any, str]] = {}
        self._lock = threading.Lock()

    def run(self, variable: str | None, issued_at: Any | None, horizons: int | None,
            overrides: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, str, pd.Timestamp, int]:
        """The baseline and the scenario forecasts, the model's name, the issue time and the horizons (``None``:
        as many as the model serves)."""
        stop = threading.Event()
        future: Future = self.executor.submit(self._run, variable, issued_at, horizons, overrides, stop)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            stop.set()
            future.cancel()
            raise TimeLimitExceeded(f"the scenario did not finish within {self.timeout_s:g} s") from None

    def _run(self, variable: str | None, issued_at: Any | None, horizons: int | None, overrides: dict[str, Any],
             stop: threading.Event) -> tuple[pd.DataFrame, pd.DataFrame, str, pd.Timestamp, int]:
        def going() -> None:
            if stop.is_set():
                raise TimeLimitExceeded("the scenario was cancelled: its caller stopped waiting")

        going()
        with self.pool.connection() as conn:
            twin = Twin(Store(conn))
            with twin.statement_timeout(self.timeout_s):
                variable = variable or forecast_variable(twin)
                model, name = self._model(twin, variable)
                issued = issue_time(twin, variable, issued_at)
                horizons = horizons or model.horizons or DEFAULT_HORIZONS
                going()
                base = model.forecast(twin, issued_at=issued.to_pydatetime(), horizons=horizons)
                going()
                what = model.forecast(twin, issued_at=issued.to_pydatetime(), horizons=horizons, overrides=overrides)
        return base, what, name, issued, horizons

    def _model(self, twin: Twin, variable: str) -> tuple[Any, str]:
        newest = twin.newest_run(target=variable)  # the run load_forecaster would load: one row
        version = f"{twin.data_hash()}:{0 if newest is None else int(newest['id'])}"
        key = (version, variable)
        with self._lock:
            if key not in self._models:
                self._models = {k: v for k, v in self._models.items() if k[0] == version}
                model, name = load_forecaster(twin, variable)
                if isinstance(model, HistoricalAverageForecaster):
                    model.fit(twin)  # once per data version, not per call
                self._models[key] = (model, name)
            return self._models[key]

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
