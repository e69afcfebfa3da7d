"""What-if scenarios over HTTP: the request checked, run by the scenario service, the answer shaped for its caller."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request

from ciu.api.deps import Ctx
from ciu.api.privacy import public_counts
from ciu.api.schemas import ScenarioRequest, ScenarioResult
from ciu.errors import ValidationError
from ciu.scenarios import compare

router = APIRouter(tags=["scenarios"])


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
    if body.horizons is not None and body.horizons > ctx.settings.scenario_max_horizons:
        raise ValidationError(f"at most {ctx.settings.scenario_max_horizons} horizons", field="horizons")
    levels = ctx.twin.levels
    if body.variable is not None:
        ctx.twin.variable(body.variable)  # UnknownVariable → 404
    for lv in body.levels or []:
        ctx.twin.rank(lv)
    for part in (body.event, body.closure):
        if part is not None:
            ctx.twin.unit_row(part.code)  # UnknownUnit → 404
    if not (body.event or body.closure or body.weather or body.holiday):
        raise ValidationError("give at least one of event, closure, weather, holiday", field="event")
    started = time.perf_counter()
    base, what, model, issued, horizons = request.app.state.scenarios.run(body.variable, body.issued_at,
                                                                          body.horizons, _overrides(body))
    found = compare(base, what, levels=list(levels), keep_levels=body.levels,
                    max_units=ctx.settings.scenario_max_units)
    rows, totals = found.rows, found.totals
    var_defs = {v.name: v for v in ctx.twin.variables()}

    def shown(values: pd.Series, variable: str | None) -> list[float | None]:
        var = var_defs.get(variable)
        arr = values.to_numpy(dtype=float)
        if var is not None and var.is_count:
            return public_counts(arr, **ctx.privacy())
        return [None if np.isnan(v) else float(v) for v in arr]

    variable = str(base["variable"].iloc[0]) if len(base) else body.variable
    b_vals, s_vals = shown(rows["value_b"], variable), shown(rows["value_s"], variable)
    bands = {f"{side}_{q}": shown(rows[f"{col}_{x}"], variable) if f"{col}_{x}" in rows else [None] * len(rows)
             for side, x in (("baseline", "b"), ("scenario", "s")) for q, col in (("p10", "q10"), ("p90", "q90"))}
    units = [{
        "code": r.code, "level": r.level, "variable": r.variable, "horizon": int(r.horizon),
        "time": pd.Timestamp(r.time).isoformat(), "baseline": b, "scenario": s,
        "delta": None if (b is None or s is None) else s - b,
        "baseline_risk": float(r.risk_b), "scenario_risk": float(r.risk_s),
        **{k: v[i] for k, v in bands.items()},
    } for i, (r, b, s) in enumerate(zip(rows.itertuples(index=False), b_vals, s_vals))]
    tb, ts = shown(totals["value_b"], variable), shown(totals["value_s"], variable)
    ctx.audit(units=int(rows["code"].nunique()))
    return {
        "model": model, "issued_at": issued.isoformat(), "horizons": horizons,
        "overrides": _overrides(body), "affected": found.affected, "truncated": found.truncated,
        "totals": [{"level": r.level, "horizon": int(r.horizon), "baseline": b, "scenario": s}
                   for r, b, s in zip(totals.itertuples(index=False), tb, ts)],
        "units": units, "seconds": round(time.perf_counter() - started, 3),
    }
