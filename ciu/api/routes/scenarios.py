"""What-if scenarios: a forecast with overrides beside the baseline, bounded in time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request

from ciu.api.deps import Ctx
from ciu.api.privacy import is_count, public_counts
from ciu.api.schemas import ScenarioRequest, ScenarioResult
from ciu.clock import utc
from ciu.errors import TimeLimitExceeded, ValidationError
from ciu.forecast import HistoricalAverageForecaster, forecast_variable, load_forecaster
from ciu.store import Store
from ciu.twin import Twin

router = APIRouter(tags=["scenarios"])


class ScenarioRunner:
    """Runs scenarios on a small thread pool with their own connections; remembers fitted models."""

    def __init__(self, pool: Any, *, workers: int = 1, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ciu-scenario")
        self._models: dict[tuple[str, str], tuple[Any, str]] = {}
        self._lock = threading.Lock()

    def run(self, req: ScenarioRequest) -> tuple[pd.DataFrame, pd.DataFrame, str, pd.Timestamp]:
        future: Future = self.executor.submit(self._run, req)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise TimeLimitExceeded(f"the scenario did not finish within {self.timeout_s:g} s") from None

    def _run(self, req: ScenarioRequest) -> tuple[pd.DataFrame, pd.DataFrame, str, pd.Timestamp]:
        with self.pool.connection() as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(int(self.timeout_s * 1000)),))
            try:
                twin = Twin(Store(conn))
                variable = req.variable or forecast_variable(twin)
                model, name = self._model(twin, variable)
                issued = _issued_at(twin, req, variable)
                overrides = _overrides(req)
                base = model.forecast(twin, issued_at=issued.to_pydatetime(), horizons=req.horizons)
                what = model.forecast(twin, issued_at=issued.to_pydatetime(), horizons=req.horizons,
                                      overrides=overrides)
            finally:
                conn.execute("SELECT set_config('statement_timeout', '0', false)")
        return base, what, name, issued

    def _model(self, twin: Twin, variable: str) -> tuple[Any, str]:
        runs = twin.store.model_runs()
        version = f"{twin.store.data_hash()}:{int(runs['id'].max()) if len(runs) else 0}"
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


def _issued_at(twin: Twin, req: ScenarioRequest, variable: str) -> pd.Timestamp:
    if req.issued_at is not None:
        return utc(req.issued_at).floor("h")
    hour = twin.last_observed_hour(variable)
    if hour is None:
        raise ValidationError(f"the twin holds no observations of {variable!r} to forecast from", field="issued_at")
    return hour


def _overrides(req: ScenarioRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.event is not None:
        out["event"] = req.event.model_dump()
    if req.closure is not None:
        out["closure"] = req.closure.model_dump()
    if req.weather is not None:
        out["weather"] = req.weather.model_dump()
    if req.holiday:
        out["holiday"] = True
    return out


@router.post("/scenarios", response_model=ScenarioResult, summary="Run a what-if scenario beside the baseline",
             description="An event of N people at a unit and time, the closure of a unit, a weather or holiday "
                         "override (any combination): the forecast of every affected unit and level beside the "
                         "baseline. Runs the newest trained champion of the variable when one exists, else the "
                         "historical-average forecaster; the answer names the model. Needs an API key; bounded in "
                         "time (504).")
def scenario(ctx: Ctx, body: ScenarioRequest, request: Request) -> dict:
    ctx.who.require("key")
    if body.horizons > ctx.settings.scenario_max_horizons:
        raise ValidationError(f"at most {ctx.settings.scenario_max_horizons} horizons", field="horizons")
    levels = ctx.store.levels()
    if body.variable is not None:
        ctx.store.variable(body.variable)  # UnknownVariable → 404
    for lv in body.levels or []:
        ctx.store.rank(lv)
    for part in (body.event, body.closure):
        if part is not None:
            ctx.store.unit_row(part.code)  # UnknownUnit → 404
    if not (body.event or body.closure or body.weather or body.holiday):
        raise ValidationError("give at least one of event, closure, weather, holiday", field="event")
    started = time.perf_counter()
    base, what, model, issued = request.app.state.scenarios.run(body)
    merged = base.merge(what, on=["code", "level", "variable", "horizon", "time"], suffixes=("_b", "_s"))
    if body.levels:
        merged = merged[merged["level"].isin(body.levels)]
    merged["delta"] = merged["value_s"] - merged["value_b"]
    changed = (merged["delta"].abs() > 1e-9) | ((merged["risk_s"] - merged["risk_b"]).abs() > 1e-12)
    rank = {lv: i for i, lv in enumerate(levels)}
    per_unit = merged[changed].groupby(["code", "level"])["delta"].apply(lambda d: float(d.abs().max())).reset_index()
    per_unit["rank"] = per_unit["level"].map(rank)
    per_unit = per_unit.sort_values(["rank", "delta", "code"], ascending=[False, False, True])
    chosen = per_unit["code"].head(ctx.settings.scenario_max_units)
    rows = merged[merged["code"].isin(set(chosen))].copy()
    rows["order"] = rows["code"].map({c: i for i, c in enumerate(chosen)})
    rows = rows.sort_values(["order", "horizon"])
    var_defs = {v.name: v for v in ctx.twin.variables()}
    totals = merged.groupby(["level", "horizon"])[["value_b", "value_s"]].sum().reset_index()
    totals["rank"] = totals["level"].map(rank)
    totals = totals.sort_values(["rank", "horizon"], ascending=[False, True])

    def shown(values: pd.Series, variable: str | None) -> list[float | None]:
        var = var_defs.get(variable)
        arr = values.to_numpy(dtype=float)
        if var is not None and is_count(var):
            return public_counts(arr, **ctx.privacy())
        return [None if np.isnan(v) else float(v) for v in arr]

    variable = str(base["variable"].iloc[0]) if len(base) else body.variable
    b_vals, s_vals = shown(rows["value_b"], variable), shown(rows["value_s"], variable)
    units = [{
        "code": r.code, "level": r.level, "variable": r.variable, "horizon": int(r.horizon),
        "time": pd.Timestamp(r.time).isoformat(), "baseline": b, "scenario": s,
        "delta": None if (b is None or s is None) else s - b,
        "baseline_risk": float(r.risk_b), "scenario_risk": float(r.risk_s),
    } for r, b, s in zip(rows.itertuples(index=False), b_vals, s_vals)]
    tb, ts = shown(totals["value_b"], variable), shown(totals["value_s"], variable)
    ctx.audit(units=len(chosen))
    return {
        "model": model, "issued_at": issued.isoformat(), "horizons": body.horizons,
        "overrides": _overrides(body), "affected": int(len(per_unit)),
        "truncated": bool(len(per_unit) > len(chosen)),
        "totals": [{"level": r.level, "horizon": int(r.horizon), "baseline": b, "scenario": s}
                   for r, b, s in zip(totals.itertuples(index=False), tb, ts)],
        "units": units, "seconds": round(time.perf_counter() - started, 3),
    }
